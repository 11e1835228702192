package sensor

import (
	"encoding/json"
	"io"
	"net/netip"
	"path/filepath"
	"slices"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/tschsensor/tschsensor/sensor/source"
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
	src, err := source.OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	opt := Options{}
	opt.setDefaults()
	st := newStats()
	rec := &collect{}
	mem := &soloBudget{}
	stubs := 0
	file := filepath.Base(path)
	env := connEnv{opt: &opt, stats: &st, stubBytes: &stubs, mem: mem, epm: NewEPMTable(0, 0), rec: rec,
		seq: &soloSeq{}, file: &file, keys: newSessionKeyStore(maxSharedSessionKeys)}
	type tuple struct {
		a, b netip.AddrPort
	}
	conns := map[tuple]*conn{}
	var order []*conn
	var frame uint64
	for {
		data, ci, link, err := src.ReadPacket()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		frame++
		pkt := gopacket.NewPacket(data, link, gopacket.Default)
		tcp, _ := pkt.Layer(layers.LayerTypeTCP).(*layers.TCP)
		if tcp == nil || pkt.NetworkLayer() == nil {
			continue
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
		c.frame, c.ci = frame, ci
		switch {
		case len(tcp.Payload) == 0:
		case c.proto == protoUnknown:
			c.classify(dir, tcp.Payload)
		default:
			c.half[dir].feed(c, dir, tcp.Payload)
		}
	}
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
	for _, x := range c.calls {
		y := *x
		y.Seq = 0
		b, err := json.Marshal(&y)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, string(b))
	}
	for _, x := range c.files {
		y := *x
		y.Seq = 0
		b, err := json.Marshal(&y)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, string(b))
	}
	slices.Sort(out)
	return out
}
