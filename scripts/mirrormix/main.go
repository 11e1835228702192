// Command mirrormix writes a synthetic mirror-port capture: what a SPAN port
// carries besides SMB and DCE-RPC. Many short request/response TCP
// connections (web, TLS, LDAP-free, nothing on ports 135, 139 or 445) run
// alongside a few bulk transfers (backups, video), with real IPv4 and TCP
// checksums, interleaved in time. The same flags give the same file, byte
// for byte, so that performance figures can be compared across machines and
// commits.
//
// usage: go run ./scripts/mirrormix [-o FILE] [-short N] [-bulk N] [-bulk-mb MB] [-seed S]
//
// The defaults (21,000 short connections, 4 bulk transfers of 60 MB) make
// about 500,000 packets and 380 MB.
package main

import (
	"bufio"
	"container/heap"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"time"

	"github.com/tschsensor/tschsensor/internal/csum"
)

// Options sizes the mix.
type Options struct {
	Short     int     // short request/response connections
	Bulk      int     // bulk transfers
	BulkBytes int     // bytes each bulk transfer carries server to client
	Seed      uint64  // PRNG seed: same seed, same file
	Duration  float64 // seconds of capture time the short connections spread over
}

const (
	mss       = 1460
	snapLen   = 65535
	linkEther = 1
)

// Ports of the short connections: web, TLS, DNS over TCP, mail, proxies.
// Never 135, 139, 445 or a port the endpoint mapper would hand out.
var shortPorts = []uint16{80, 443, 443, 443, 8080, 8443, 53, 993, 25, 3128}

// Ports of the bulk transfers: rsync, SSH, backup agents, streaming.
var bulkPorts = []uint16{873, 22, 10000, 1935, 9102, 5001}

func main() {
	out := flag.String("o", "/tmp/mirror-mix.pcap", "output pcap `file`")
	o := Options{}
	flag.IntVar(&o.Short, "short", 21000, "short request/response connections")
	flag.IntVar(&o.Bulk, "bulk", 4, "bulk transfers")
	bulkMB := flag.Int("bulk-mb", 60, "megabytes (10^6) per bulk transfer")
	flag.Uint64Var(&o.Seed, "seed", 1, "PRNG seed")
	flag.Float64Var(&o.Duration, "duration", 60, "seconds of capture time")
	flag.Parse()
	o.BulkBytes = *bulkMB * 1000000
	if err := run(*out, o); err != nil {
		fmt.Fprintln(os.Stderr, "mirrormix:", err)
		os.Exit(1)
	}
}

func run(name string, o Options) error {
	f, err := os.Create(name)
	if err != nil {
		return fmt.Errorf("create capture: %w", err)
	}
	n, bytes, err := Write(f, o)
	if cerr := f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("close capture: %w", cerr)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "mirrormix: %s: %d packets, %d bytes\n", name, n, bytes)
	return nil
}

// flow is one TCP connection's script; its packets are produced one at a
// time so that memory stays small whatever the sizes.
type flow struct {
	id           int
	client       [4]byte
	server       [4]byte
	cport, sport uint16
	cmac, smac   [6]byte
	cseq, sseq   uint32 // next sequence number of each side
	cid, sid     uint16 // IP ids
	rng          *rand.Rand
	rtt          time.Duration
	next         time.Time // time of the next packet
	step         int       // position in the script
	req, resp    int       // bytes to send each way
	sent         int       // bytes sent in the current data phase
	unacked      int       // full segments since the last ACK
	bulk         bool
	pace         time.Duration // bulk: time between packets
	payload      []byte        // random data pool (shared)
	poolOff      int
}

type pkt struct {
	fromClient bool
	flags      uint8
	payload    []byte
}

const (
	flagFIN = 0x01
	flagSYN = 0x02
	flagPSH = 0x08
	flagACK = 0x10
)

// script steps: 0 SYN, 1 SYN-ACK, 2 ACK, 3 request data, 4 response data
// (with an ACK from the client every second segment), 5 FIN client,
// 6 FIN-ACK server, 7 last ACK, 8 done.
func (fl *flow) nextPacket() (pkt, bool) {
	switch fl.step {
	case 0:
		fl.step++
		return pkt{fromClient: true, flags: flagSYN}, true
	case 1:
		fl.step++
		return pkt{flags: flagSYN | flagACK}, true
	case 2:
		fl.step++
		return pkt{fromClient: true, flags: flagACK}, true
	case 3:
		n := min(fl.req-fl.sent, mss)
		fl.sent += n
		if fl.sent >= fl.req {
			fl.step++
			fl.sent = 0
		}
		return pkt{fromClient: true, flags: flagACK | flagPSH, payload: fl.data(n)}, true
	case 4:
		if fl.unacked >= 2 {
			fl.unacked = 0
			return pkt{fromClient: true, flags: flagACK}, true
		}
		n := min(fl.resp-fl.sent, mss)
		fl.sent += n
		fl.unacked++
		flags := uint8(flagACK)
		if fl.sent >= fl.resp {
			fl.step++
			flags |= flagPSH
		}
		return pkt{flags: flags, payload: fl.data(n)}, true
	case 5:
		fl.step++
		return pkt{fromClient: true, flags: flagFIN | flagACK}, true
	case 6:
		fl.step++
		return pkt{flags: flagFIN | flagACK}, true
	case 7:
		fl.step++
		return pkt{fromClient: true, flags: flagACK}, true
	}
	return pkt{}, false
}

// data returns n bytes of the random pool: payloads look like TLS or
// compressed data, which no SMB or DCE-RPC parser accepts.
func (fl *flow) data(n int) []byte {
	if fl.poolOff+n > len(fl.payload) {
		fl.poolOff = fl.rng.IntN(len(fl.payload) - mss)
	}
	b := fl.payload[fl.poolOff : fl.poolOff+n]
	fl.poolOff += n
	return b
}

// gap is the time to the packet after p: a round trip when the direction
// turns, back-to-back segments otherwise.
func (fl *flow) gap(p pkt) time.Duration {
	if fl.bulk {
		// Bulk transfers run for the whole capture, paced evenly.
		return fl.pace + time.Duration(fl.rng.IntN(20))*time.Microsecond
	}
	if len(p.payload) == mss {
		return 15 * time.Microsecond
	}
	return fl.rtt + time.Duration(fl.rng.IntN(200))*time.Microsecond
}

// flowHeap orders flows by the time of their next packet, then by id, so
// that the interleaving is deterministic.
type flowHeap []*flow

func (h flowHeap) Len() int { return len(h) }
func (h flowHeap) Less(i, j int) bool {
	if !h[i].next.Equal(h[j].next) {
		return h[i].next.Before(h[j].next)
	}
	return h[i].id < h[j].id
}
func (h flowHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *flowHeap) Push(x any)   { *h = append(*h, x.(*flow)) }
func (h *flowHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// Write writes the mix as a classic pcap (µs timestamps, Ethernet) and
// returns how many packets and bytes it wrote.
func Write(w io.Writer, o Options) (int, int64, error) {
	if o.Short < 0 || o.Bulk < 0 || o.BulkBytes < 0 || o.Duration <= 0 {
		return 0, 0, errors.New("sizes must not be negative and the duration must be positive")
	}
	rng := rand.New(rand.NewPCG(o.Seed, 0x6d6972726f726d78))
	pool := make([]byte, 1<<20)
	for i := range pool {
		pool[i] = byte(rng.Uint32())
	}
	start := time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)
	var h flowHeap
	newFlow := func(id int, bulk bool) *flow {
		fl := &flow{id: id, bulk: bulk, payload: pool,
			rng:  rand.New(rand.NewPCG(o.Seed, uint64(id)+1)),
			cseq: rng.Uint32(), sseq: rng.Uint32(), cid: uint16(rng.Uint32()), sid: uint16(rng.Uint32())}
		fl.client = [4]byte{10, byte(1 + rng.IntN(20)), byte(rng.IntN(256)), byte(1 + rng.IntN(254))}
		fl.server = [4]byte{172, 16, byte(rng.IntN(8)), byte(1 + rng.IntN(254))}
		fl.cport = uint16(32768 + rng.IntN(28000))
		fl.cmac = [6]byte{0x02, 0, fl.client[0], fl.client[1], fl.client[2], fl.client[3]}
		fl.smac = [6]byte{0x02, 1, fl.server[0], fl.server[1], fl.server[2], fl.server[3]}
		fl.poolOff = rng.IntN(len(pool) - mss)
		if bulk {
			fl.sport = bulkPorts[id%len(bulkPorts)]
			fl.req, fl.resp = 64+rng.IntN(200), o.BulkBytes
			fl.rtt = 500 * time.Microsecond
			// A data segment and half an ACK per MSS.
			fl.pace = time.Duration(o.Duration * float64(time.Second) / (1.5*float64(o.BulkBytes)/mss + 1))
			fl.next = start.Add(time.Duration(id) * 10 * time.Millisecond)
		} else {
			fl.sport = shortPorts[rng.IntN(len(shortPorts))]
			// Requests of a few hundred bytes; responses mostly small, some
			// of a few dozen kilobytes (pages, images).
			fl.req = 200 + rng.IntN(600)
			fl.resp = 300 + rng.IntN(4000)
			if rng.IntN(8) == 0 {
				fl.resp += rng.IntN(40000)
			}
			fl.rtt = time.Duration(200+rng.IntN(20000)) * time.Microsecond
			fl.next = start.Add(time.Duration(rng.Float64() * o.Duration * float64(time.Second)))
		}
		return fl
	}
	for i := range o.Bulk {
		h = append(h, newFlow(i, true))
	}
	for i := range o.Short {
		h = append(h, newFlow(o.Bulk+i, false))
	}
	heap.Init(&h)

	bw := bufio.NewWriterSize(w, 1<<20)
	var hdr [24]byte
	binary.LittleEndian.PutUint32(hdr[0:], 0xa1b2c3d4)
	binary.LittleEndian.PutUint16(hdr[4:], 2)
	binary.LittleEndian.PutUint16(hdr[6:], 4)
	binary.LittleEndian.PutUint32(hdr[16:], snapLen)
	binary.LittleEndian.PutUint32(hdr[20:], linkEther)
	bw.Write(hdr[:])
	total := int64(len(hdr))
	var n int
	buf := make([]byte, 0, 16+14+20+20+mss)
	for h.Len() > 0 {
		fl := h[0]
		p, ok := fl.nextPacket()
		if !ok {
			heap.Pop(&h)
			continue
		}
		buf = fl.encode(buf[:0], p)
		var rec [16]byte
		us := fl.next.UnixMicro()
		binary.LittleEndian.PutUint32(rec[0:], uint32(us/1e6))
		binary.LittleEndian.PutUint32(rec[4:], uint32(us%1e6))
		binary.LittleEndian.PutUint32(rec[8:], uint32(len(buf)))
		binary.LittleEndian.PutUint32(rec[12:], uint32(len(buf)))
		bw.Write(rec[:])
		if _, err := bw.Write(buf); err != nil {
			return n, total, fmt.Errorf("write capture: %w", err)
		}
		n++
		total += int64(len(rec) + len(buf))
		fl.next = fl.next.Add(fl.gap(p))
		heap.Fix(&h, 0)
	}
	if err := bw.Flush(); err != nil {
		return n, total, fmt.Errorf("write capture: %w", err)
	}
	return n, total, nil
}

// encode appends an Ethernet/IPv4/TCP frame carrying p and advances the
// flow's sequence numbers.
func (fl *flow) encode(b []byte, p pkt) []byte {
	srcMAC, dstMAC, src, dst := fl.smac, fl.cmac, fl.server, fl.client
	sport, dport := fl.sport, fl.cport
	seq, ack, id := &fl.sseq, fl.cseq, &fl.sid
	if p.fromClient {
		srcMAC, dstMAC, src, dst = fl.cmac, fl.smac, fl.client, fl.server
		sport, dport = fl.cport, fl.sport
		seq, ack, id = &fl.cseq, fl.sseq, &fl.cid
	}
	b = append(b, dstMAC[:]...)
	b = append(b, srcMAC[:]...)
	b = append(b, 0x08, 0x00)
	ip := len(b)
	tlen := 20 + 20 + len(p.payload)
	b = append(b, 0x45, 0, byte(tlen>>8), byte(tlen), byte(*id>>8), byte(*id), 0x40, 0, 64, 6, 0, 0)
	b = append(b, src[:]...)
	b = append(b, dst[:]...)
	binary.BigEndian.PutUint16(b[ip+10:], ^csum.Fold(csum.Add(0, b[ip:ip+20])))
	*id++
	tcp := len(b)
	ackNum := ack
	flags := p.flags
	if flags&flagACK == 0 {
		ackNum = 0
	}
	b = binary.BigEndian.AppendUint16(b, sport)
	b = binary.BigEndian.AppendUint16(b, dport)
	b = binary.BigEndian.AppendUint32(b, *seq)
	b = binary.BigEndian.AppendUint32(b, ackNum)
	b = append(b, 5<<4, flags, 0xfa, 0xf0, 0, 0, 0, 0)
	b = append(b, p.payload...)
	// Pseudo-header: addresses, protocol, TCP length.
	s := csum.Add(0, src[:])
	s = csum.Add(s, dst[:])
	s += 6 + uint32(len(b)-tcp)
	s = csum.Add(s, b[tcp:])
	binary.BigEndian.PutUint16(b[tcp+16:], ^csum.Fold(s))
	*seq += uint32(len(p.payload))
	if flags&(flagSYN|flagFIN) != 0 {
		*seq++
	}
	return b
}
