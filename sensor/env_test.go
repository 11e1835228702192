package sensor

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// soloBudget accounts framers' buffers without a worker's eviction: it
// checks that every half releases what it was charged.
type soloBudget struct{ held, peak int64 }

func (b *soloBudget) settle(h *half) {
	c := int64(cap(h.buf))
	b.held += c - h.charged
	h.charged = c
	b.peak = max(b.peak, b.held)
}

func (b *soloBudget) release(h *half) {
	b.held -= h.charged
	h.charged = 0
}

// soloSeq numbers records as a worker does.
type soloSeq struct {
	n       uint64
	dropped int
}

func (s *soloSeq) nextSeq() uint64 { s.n++; return s.n }
func (s *soloSeq) dropSeq(uint64)  { s.dropped++ }

// feedEnvOnly runs a capture's TCP payloads, in capture order, straight into
// connections built on a connEnv alone: no Worker, no reassembler, no flow
// table. The project's captures are clean loopback traffic, so payload
// order is stream order.
func feedEnvOnly(t *testing.T, path string) (*collect, *Stats, *soloBudget) {
	t.Helper()
	opt := Options{}
	opt.setDefaults()
	st := newStats()
	rec := &collect{}
	mem := &soloBudget{}
	stubs := 0
	file := filepath.Base(path)
	env := connEnv{opt: &opt, stats: &st, stubBytes: &stubs, workerBounds: new(workerBounds), mem: mem, epm: NewEPMTable(0, 0), rec: rec,
		seq: &soloSeq{}, file: &file, keys: newSessionKeyStore(maxSharedSessionKeys)}
	type tuple struct {
		a, b netip.AddrPort
	}
	conns := map[tuple]*conn{}
	var order []*conn
	eachPacket(t, path, func(frame int, data []byte, ci gopacket.CaptureInfo, link layers.LinkType) {
		pkt := gopacket.NewPacket(data, link, gopacket.Default)
		tcp, _ := pkt.Layer(layers.LayerTypeTCP).(*layers.TCP)
		if tcp == nil || pkt.NetworkLayer() == nil {
			return
		}
		nsrc, ndst := pkt.NetworkLayer().NetworkFlow().Endpoints()
		s, _ := netip.AddrFromSlice(nsrc.Raw())
		d, _ := netip.AddrFromSlice(ndst.Raw())
		from := netip.AddrPortFrom(s.Unmap(), uint16(tcp.SrcPort))
		to := netip.AddrPortFrom(d.Unmap(), uint16(tcp.DstPort))
		c, dir := conns[tuple{from, to}], 0
		if c == nil {
			c, dir = conns[tuple{to, from}], 1
		}
		if c == nil {
			c, dir = &conn{env: &env, client: -1}, 0
			c.addr = [2]netip.Addr{from.Addr(), to.Addr()}
			c.port = [2]uint16{from.Port(), to.Port()}
			if tcp.SYN && !tcp.ACK {
				c.setClient(0)
			}
			conns[tuple{from, to}] = c
			order = append(order, c)
		}
		c.frame, c.ci = uint64(frame), ci
		switch {
		case len(tcp.Payload) == 0:
		case c.proto == protoUnknown:
			c.classify(dir, tcp.Payload)
		default:
			c.half[dir].feed(c, dir, tcp.Payload)
		}
	})
	for _, c := range order {
		if c.app != nil {
			c.app.close()
		}
		mem.release(&c.half[0])
		mem.release(&c.half[1])
	}
	return rec, &st, mem
}

// TestStateMachinesWithoutWorker: the SMB and DCE-RPC state machines take
// everything they use from a connEnv, so connections built on one alone
// report what a Worker reports for the same capture, over SMB2, SMB1,
// NBSS on 139, and TCP after an endpoint-mapper lookup.
func TestStateMachinesWithoutWorker(t *testing.T) {
	for _, name := range []string{"impacket-atexec-smb2-clear", "impacket-at-smb1", "impacket-nbss139",
		"impacket-schtask-tcp", "gosmb2-legacy-job", "impacket-atexec-smb1-clear"} {
		t.Run(name, func(t *testing.T) {
			path := "../pcaps/" + name + ".pcap"
			want, wst := replayWorker(t, path)
			got, gst, mem := feedEnvOnly(t, path)
			if len(want.calls) == 0 {
				t.Fatalf("the worker reports no calls: nothing to compare")
			}
			if a, b := records(t, got), records(t, want); !slices.Equal(a, b) {
				t.Errorf("records without a worker differ:\n%v\nwant\n%v", a, b)
			}
			if gst.TschCalls != wst.TschCalls || gst.SMBMessages != wst.SMBMessages || gst.RPCPDUs != wst.RPCPDUs {
				t.Errorf("counters: calls %d smb %d pdus %d, worker %d %d %d", gst.TschCalls, gst.SMBMessages, gst.RPCPDUs,
					wst.TschCalls, wst.SMBMessages, wst.RPCPDUs)
			}
			if len(gst.Anomalies) != 0 {
				t.Errorf("anomalies %v", gst.Anomalies)
			}
			if mem.held != 0 {
				t.Errorf("framers still hold %d bytes of the budget after close", mem.held)
			}
		})
	}
}

// records renders calls and file operations for comparison, without their
// sequence numbers (connections end in another order at a flush).
func records(t *testing.T, c *collect) []string {
	t.Helper()
	var out []string
	add := func(v any) {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, string(b))
	}
	for _, x := range c.calls {
		y := *x
		y.Seq = 0
		add(&y)
	}
	for _, x := range c.files {
		y := *x
		y.Seq = 0
		add(&y)
	}
	slices.Sort(out)
	return out
}

// recFramer is a transport for the framer alone: DCE-RPC framing, messages
// and anomalies recorded, heads larger than take offered to partial taken.
type recFramer struct {
	msgs      []string
	anomalies []string
	max, take int
	mem       soloBudget
}

func (r *recFramer) framing(b []byte) int       { return rpcFrame(b) }
func (r *recFramer) start(b []byte) int         { return rpcStart(b) }
func (r *recFramer) handle(dir int, msg []byte) { r.msgs = append(r.msgs, string(msg)) }
func (r *recFramer) anomaly(name string)        { r.anomalies = append(r.anomalies, name) }
func (r *recFramer) maxMessage() int            { return r.max }
func (r *recFramer) budget() msgBudget          { return &r.mem }
func (r *recFramer) partial(dir int, head []byte, total int) bool {
	if r.take > 0 && total > r.take {
		r.msgs = append(r.msgs, fmt.Sprintf("partial, %d bytes", total))
		return true
	}
	return false
}

// TestFramerSegmentation runs the framer's modes (hunt, frame, header,
// body, skip) on the client stream of pcaps/impacket-schtask-tcp.pcap (to
// port 49667: bind, auth3, requests up to 1448 bytes), cut mid-stream at
// offsets into its first PDUs: the messages handed on, the messages taken
// by partial, the skips and the anomalies must not depend on how the bytes
// arrive. maxMessage and partial bound what is buffered, so a message that
// arrives whole in one delivery passes them; with those limits set, the
// deliveries compared are never larger than the limits.
func TestFramerSegmentation(t *testing.T) {
	stream := clientStream(t, "../pcaps/impacket-schtask-tcp.pcap", 49667)
	if len(stream) < 2000 {
		t.Fatalf("client stream of %d bytes: not the capture expected", len(stream))
	}
	run := func(data []byte, max, take int, deliveries [][2]int, mid bool) *recFramer {
		f := &recFramer{max: max, take: take}
		var h half
		h.unsynced = mid
		for _, d := range deliveries {
			// A copy per delivery: the framer must not keep the caller's bytes.
			h.feed(f, 0, append([]byte(nil), data[d[0]:d[1]]...))
		}
		return f
	}
	chunks := func(n, size int) [][2]int {
		var out [][2]int
		for i := 0; i < n; i += size {
			out = append(out, [2]int{i, min(i+size, n)})
		}
		return out
	}
	for _, lim := range []struct{ max, take int }{{1 << 20, 0}, {300, 0}, {1 << 20, 400}} {
		for cut := 0; cut < 300; cut += 7 {
			data := stream[cut:]
			want := run(data, lim.max, lim.take, chunks(len(data), 1), cut > 0)
			if cut == 0 {
				// The stream's PDUs: bind, auth3, requests of 112 to 2028
				// bytes; each limit must have something to bound.
				var skipped, taken int
				for _, m := range want.msgs {
					if strings.HasPrefix(m, "partial") {
						taken++
					}
				}
				for _, a := range want.anomalies {
					if a == "message_too_large" {
						skipped++
					}
				}
				if len(want.msgs) < 4 || lim.take > 0 && taken == 0 || lim.max < 1<<20 && skipped == 0 {
					t.Fatalf("limits %+v: %d messages, %d taken by partial, %d skipped: not the stream expected", lim, len(want.msgs), taken, skipped)
				}
			}
			cases := map[string][][2]int{}
			for _, size := range []int{7, 131, 299} {
				cases[fmt.Sprintf("%d-byte deliveries", size)] = chunks(len(data), size)
			}
			if lim.take == 0 && lim.max > len(data) {
				cases["whole"] = chunks(len(data), len(data))
				for split := 1; split < len(data); split += 13 {
					cases[fmt.Sprintf("split %d", split)] = [][2]int{{0, split}, {split, len(data)}}
				}
			}
			for name, d := range cases {
				got := run(data, lim.max, lim.take, d, cut > 0)
				if !slices.Equal(got.msgs, want.msgs) || !slices.Equal(got.anomalies, want.anomalies) {
					t.Fatalf("limits %+v, cut %d, %s: %d messages %v, byte by byte: %d messages %v", lim, cut, name,
						len(got.msgs), got.anomalies, len(want.msgs), want.anomalies)
				}
			}
		}
	}
}

// clientStream is the payload sent to port in a capture, in capture order.
func clientStream(t *testing.T, path string, port uint16) []byte {
	t.Helper()
	var out []byte
	eachPacket(t, path, func(_ int, data []byte, _ gopacket.CaptureInfo, link layers.LinkType) {
		pkt := gopacket.NewPacket(data, link, gopacket.Default)
		if tcp, _ := pkt.Layer(layers.LayerTypeTCP).(*layers.TCP); tcp != nil && uint16(tcp.DstPort) == port {
			out = append(out, tcp.Payload...)
		}
	})
	return out
}
