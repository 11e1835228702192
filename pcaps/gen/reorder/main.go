// Command reorder rewrites a classic pcap of Ethernet/IPv4/TCP traffic so that
// a TCP reassembler has work to do: payloads are cut into small segments,
// later segments of a direction arrive swapped in pairs and some are sent
// twice. The output is a function of the input and the flags only.
//
//	go run ./pcaps/gen/reorder -segment 300 -dup 3 in.pcap out.pcap
//
// Rules, per TCP direction of each connection:
//   - the first data segment stays first (a mid-stream reassembler starts
//     there; data before it would be lost for good, which is not what the
//     derived captures test);
//   - data segments 1-2, 3-4, … are emitted in swapped order; a segment held
//     for swapping is released before the other direction's next data or
//     FIN/RST, so no answer overtakes its question;
//   - every dup-th data segment is followed by an identical copy.
//
// Frames that are not Ethernet/IPv4/TCP pass through unchanged. Timestamps
// stay non-decreasing; rebuilt frames get fresh IPv4 and TCP checksums.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
)

type packet struct {
	ci   gopacket.CaptureInfo
	data []byte
}

// dirKey names one direction of a TCP connection.
type dirKey struct {
	src, dst         [4]byte
	srcPort, dstPort layers.TCPPort
}

func (k dirKey) reverse() dirKey {
	return dirKey{src: k.dst, dst: k.src, srcPort: k.dstPort, dstPort: k.srcPort}
}

type dirState struct {
	n    int     // data segments seen
	held *packet // segment waiting for its swap partner
}

type rewriter struct {
	segment, dup int
	dirs         map[dirKey]*dirState
	out          []packet
}

func main() {
	segment := flag.Int("segment", 300, "largest TCP payload per segment")
	dup := flag.Int("dup", 3, "send every n-th data segment twice (0: never)")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: reorder [-segment n] [-dup n] in.pcap out.pcap\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 2 || *segment < 1 || *dup < 0 {
		flag.Usage()
		os.Exit(2)
	}
	if err := run(flag.Arg(0), flag.Arg(1), *segment, *dup); err != nil {
		fmt.Fprintln(os.Stderr, "reorder:", err)
		os.Exit(1)
	}
}

func run(in, out string, segment, dup int) error {
	f, err := os.Open(in)
	if err != nil {
		return err
	}
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	if err != nil {
		return fmt.Errorf("%s: %w", in, err)
	}
	if r.LinkType() != layers.LinkTypeEthernet {
		return fmt.Errorf("%s: link type %v, want Ethernet", in, r.LinkType())
	}
	rw := &rewriter{segment: segment, dup: dup, dirs: make(map[dirKey]*dirState)}
	for {
		data, ci, err := r.ReadPacketData()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("%s: %w", in, err)
		}
		if err := rw.packet(packet{ci, append([]byte(nil), data...)}); err != nil {
			return fmt.Errorf("%s: %w", in, err)
		}
	}
	rw.flushAll()

	o, err := os.Create(out)
	if err != nil {
		return err
	}
	var w *pcapgo.Writer
	if r.Resolution() == gopacket.TimestampResolutionNanosecond {
		w = pcapgo.NewWriterNanos(o)
	} else {
		w = pcapgo.NewWriter(o)
	}
	if err := w.WriteFileHeader(r.Snaplen(), layers.LinkTypeEthernet); err != nil {
		o.Close()
		return err
	}
	var last gopacket.CaptureInfo
	for _, p := range rw.out {
		// A swapped segment keeps its place in time order, not its
		// original stamp: captures have non-decreasing timestamps.
		if p.ci.Timestamp.Before(last.Timestamp) {
			p.ci.Timestamp = last.Timestamp
		}
		last = p.ci
		if err := w.WritePacket(p.ci, p.data); err != nil {
			o.Close()
			return err
		}
	}
	return o.Close()
}

// packet takes one input frame.
func (rw *rewriter) packet(p packet) error {
	var eth layers.Ethernet
	var ip layers.IPv4
	var tcp layers.TCP
	var payload gopacket.Payload
	parser := gopacket.NewDecodingLayerParser(layers.LayerTypeEthernet, &eth, &ip, &tcp, &payload)
	parser.IgnoreUnsupported = true
	var decoded []gopacket.LayerType
	if err := parser.DecodeLayers(p.data, &decoded); err != nil || !has(decoded, layers.LayerTypeTCP) ||
		ip.Flags&layers.IPv4MoreFragments != 0 || ip.FragOffset != 0 {
		rw.out = append(rw.out, p)
		return nil
	}
	var key dirKey
	copy(key.src[:], ip.SrcIP.To4())
	copy(key.dst[:], ip.DstIP.To4())
	key.srcPort, key.dstPort = tcp.SrcPort, tcp.DstPort
	data := append([]byte(nil), tcp.Payload...)

	// Before the other direction says anything, release what this
	// connection's other direction holds.
	if len(data) > 0 || tcp.FIN || tcp.RST {
		rw.release(key.reverse())
	}
	if len(data) == 0 {
		if tcp.FIN || tcp.RST {
			rw.release(key)
		}
		rw.out = append(rw.out, p)
		return nil
	}
	for off := 0; off < len(data); off += rw.segment {
		end := min(off+rw.segment, len(data))
		t := tcp
		t.Seq = tcp.Seq + uint32(off)
		if end < len(data) {
			t.FIN, t.PSH = false, false
		}
		b, err := rebuild(eth, ip, t, data[off:end])
		if err != nil {
			return err
		}
		ci := p.ci
		ci.CaptureLength, ci.Length = len(b), len(b)
		rw.segmentOut(key, packet{ci, b})
	}
	return nil
}

// segmentOut places one data segment according to the rules above.
func (rw *rewriter) segmentOut(key dirKey, p packet) {
	d := rw.dirs[key]
	if d == nil {
		d = &dirState{}
		rw.dirs[key] = d
	}
	k := d.n
	d.n++
	emit := func(p packet, k int) {
		rw.out = append(rw.out, p)
		if rw.dup > 0 && k%rw.dup == rw.dup-1 {
			rw.out = append(rw.out, packet{p.ci, append([]byte(nil), p.data...)})
		}
	}
	switch {
	case k == 0:
		emit(p, k)
	case d.held == nil:
		held := p
		d.held = &held
	default:
		emit(p, k)
		emit(*d.held, k-1)
		d.held = nil
	}
}

func (rw *rewriter) release(key dirKey) {
	if d := rw.dirs[key]; d != nil && d.held != nil {
		rw.out = append(rw.out, *d.held)
		d.held = nil
	}
}

// flushAll releases held segments in a fixed order (input order of their
// directions' first segments is lost in a map, so sort by key).
func (rw *rewriter) flushAll() {
	for {
		var best *dirKey
		for k, d := range rw.dirs {
			if d.held == nil {
				continue
			}
			if best == nil || less(k, *best) {
				kk := k
				best = &kk
			}
		}
		if best == nil {
			return
		}
		rw.release(*best)
	}
}

func less(a, b dirKey) bool {
	if a.src != b.src {
		return string(a.src[:]) < string(b.src[:])
	}
	if a.dst != b.dst {
		return string(a.dst[:]) < string(b.dst[:])
	}
	if a.srcPort != b.srcPort {
		return a.srcPort < b.srcPort
	}
	return a.dstPort < b.dstPort
}

// rebuild serializes Ethernet/IPv4/TCP around payload with fresh lengths and
// checksums.
func rebuild(eth layers.Ethernet, ip layers.IPv4, tcp layers.TCP, payload []byte) ([]byte, error) {
	if err := tcp.SetNetworkLayerForChecksum(&ip); err != nil {
		return nil, err
	}
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	if err := gopacket.SerializeLayers(buf, opts, &eth, &ip, &tcp, gopacket.Payload(payload)); err != nil {
		return nil, fmt.Errorf("rebuilding a segment: %w", err)
	}
	return append([]byte(nil), buf.Bytes()...), nil
}

func has(ts []gopacket.LayerType, t gopacket.LayerType) bool {
	for _, x := range ts {
		if x == t {
			return true
		}
	}
	return false
}
