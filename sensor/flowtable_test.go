package sensor

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/google/gopacket/layers"
)

// TestFlowTableAgainstMap drives the table with random inserts, lookups and
// removals (backward-shift deletion is the subtle part) and compares it with
// a map after every step.
func TestFlowTableAgainstMap(t *testing.T) {
	ft := newFlowTable(5000)
	ref := map[flowKey]bool{}
	rng := rand.New(rand.NewPCG(1, 2))
	key := func() flowKey {
		var k flowKey
		k.a[0], k.b[0] = 10, 10
		k.a[3] = byte(rng.IntN(4))
		k.pa = uint16(rng.IntN(3000))
		return k
	}
	nop := func(string) { t.Fatal("evicted below the bound") }
	for step := range 200000 {
		k := key()
		i := ft.lookup(&k)
		if (i >= 0) != ref[k] {
			t.Fatalf("step %d: lookup %v = %d, map says %v", step, k.pa, i, ref[k])
		}
		switch {
		case i < 0 && len(ref) < 4000:
			ft.insert(&k, int64(step), nop)
			ref[k] = true
		case i >= 0 && rng.IntN(2) == 0:
			ft.remove(uint32(i))
			delete(ref, k)
		}
		if ft.n != len(ref) {
			t.Fatalf("step %d: %d entries, map has %d", step, ft.n, len(ref))
		}
	}
	for k := range ref {
		if ft.lookup(&k) < 0 {
			t.Fatalf("%v lost", k)
		}
	}
}

// TestFlowTableEvictsHalfOpenFirst fills a table with followed flows and
// half-open ones: a full table gives up half-open entries, never a followed
// flow while one is left, and counts why.
func TestFlowTableEvictsHalfOpenFirst(t *testing.T) {
	const max = 1000
	ft := newFlowTable(max)
	reasons := map[string]int{}
	count := func(r string) { reasons[r]++ }
	var active []flowKey
	for i := range 3 * max {
		var k flowKey
		binary.BigEndian.PutUint32(k.a[:], uint32(i))
		k.pb = 445
		e := &ft.e[ft.insert(&k, int64(i), count)]
		if i%10 == 0 && len(active) < max/2 {
			e.flags |= flowConn | flowData
			e.v = verdictSMB
			active = append(active, k)
		}
	}
	if ft.n != max {
		t.Fatalf("%d entries, want the bound %d", ft.n, max)
	}
	for _, k := range active {
		if ft.lookup(&k) < 0 {
			t.Fatalf("followed flow %v evicted while half-open ones remained (%v)", k.a[:4], reasons)
		}
	}
	if reasons[evictFullHalfOpen] != 2*max || len(reasons) != 1 {
		t.Errorf("evictions %v, want %d %s", reasons, 2*max, evictFullHalfOpen)
	}
}

// flowPackets builds frames of n flows to port: a handshake, a first
// payload, then segs data segments each, flows interleaved.
func flowPackets(n int, port uint16, first []byte, segs, size int) (setup, data []plPacket) {
	convs := make([]*tcpConv, n)
	for i := range convs {
		c := newTCPConv(port)
		c.cport = uint16(1024 + i%60000)
		c.cli[2] = byte(i >> 16)
		c.cli[3] = byte(i >> 8)
		convs[i] = c
		add := func(dir int, flags uint8, p []byte) {
			b, ci := c.frame(dir, flags, p)
			setup = append(setup, plPacket{bytes.Clone(b), ci, layers.LinkTypeEthernet})
		}
		add(0, tcpSYN, nil)
		add(1, tcpSYN|tcpACK, nil)
		add(0, tcpACK, nil)
		add(0, tcpPSH|tcpACK, first)
	}
	payload := bytes.Repeat([]byte{0xab}, size)
	for range segs {
		for _, c := range convs {
			b, ci := c.frame(1, tcpACK, payload)
			data = append(data, plPacket{bytes.Clone(b), ci, layers.LinkTypeEthernet})
		}
	}
	return setup, data
}

// BenchmarkIgnoredFlow is the cost of a packet of a flow the table ignored
// (an HTTP download among 1024 flows): link/IP/TCP header parse and one
// lookup, no reassembly, no allocation.
func BenchmarkIgnoredFlow(b *testing.B) {
	setup, data := flowPackets(1024, 80, []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), 16, 1448)
	w := NewWorker(Options{}, &discardRecorder{}, nil)
	for _, p := range setup {
		w.Packet(p.data, p.ci, p.link)
	}
	b.ReportAllocs()
	b.ResetTimer()
	n := 0
	for b.Loop() {
		p := &data[n%len(data)]
		w.Packet(p.data, p.ci, p.link)
		n++
	}
	if w.Stats().Flow.Flows[verdictIgnored] != 1024 || w.active != 0 {
		b.Fatalf("flows %v, %d connections: want 1024 ignored, none reassembled", w.Stats().Flow.Flows, w.active)
	}
}

// TestIgnoredFlowNoAllocs pins the ignored-flow path at zero allocations and
// no connection object.
func TestIgnoredFlowNoAllocs(t *testing.T) {
	setup, data := flowPackets(64, 443, []byte{0x16, 3, 1, 0, 0x50}, 8, 1448)
	w := NewWorker(Options{}, &discardRecorder{}, nil)
	for _, p := range setup {
		w.Packet(p.data, p.ci, p.link)
	}
	allocs := testing.AllocsPerRun(10, func() {
		for i := range data {
			w.Packet(data[i].data, data[i].ci, data[i].link)
		}
	})
	if allocs != 0 {
		t.Errorf("%.1f allocations per %d ignored packets, want 0", allocs, len(data))
	}
	s := w.Stats()
	if s.Flow.Flows[verdictIgnored] != 64 || w.active != 0 || s.Connections != 0 {
		t.Errorf("flows %v, %d connections: want 64 ignored and none reassembled", s.Flow.Flows, w.active)
	}
	if want := uint64(64 + 11*len(data)); s.Flow.Packets[verdictIgnored] != want {
		t.Errorf("%d ignored packets counted, want %d", s.Flow.Packets[verdictIgnored], want)
	}
}

// TestHalfOpenFlowsCostNoConnection: SYNs, and handshakes with one byte,
// to port 445 stay table entries; the reassembler never sees them.
func TestHalfOpenFlowsCostNoConnection(t *testing.T) {
	for _, tc := range []struct {
		name  string
		first []byte
	}{{"syn", nil}, {"one byte", []byte{0}}, {"nbss header", []byte{0, 0, 0}}} {
		w := NewWorker(Options{}, &discardRecorder{}, nil)
		for i := range 2000 {
			c := newTCPConv(445)
			c.cport = uint16(10000 + i)
			b, ci := c.frame(0, tcpSYN, nil)
			w.Packet(b, ci, layers.LinkTypeEthernet)
			if tc.first != nil {
				b, ci = c.frame(1, tcpSYN|tcpACK, nil)
				w.Packet(b, ci, layers.LinkTypeEthernet)
				b, ci = c.frame(0, tcpPSH|tcpACK, tc.first)
				w.Packet(b, ci, layers.LinkTypeEthernet)
			}
		}
		if w.active != 0 || w.flows.n != 2000 {
			t.Errorf("%s: %d connections reassembled, %d table entries; want 0 and 2000", tc.name, w.active, w.flows.n)
		}
	}
}

// TestFlowPickedUpAfterEPMAnswer: a flow the table ignored is followed from
// the moment the endpoint mapper names its port.
func TestFlowPickedUpAfterEPMAnswer(t *testing.T) {
	w := NewWorker(Options{}, &discardRecorder{}, nil)
	c := newTCPConv(49700)
	send := c.handshake(w)
	send(0, tcpPSH|tcpACK, []byte("not a DCE-RPC header"))
	if w.Stats().Flow.Flows[verdictIgnored] != 1 {
		t.Fatalf("flows %v: want the flow ignored", w.Stats().Flow.Flows)
	}
	w.epm.Learn(netip.AddrFrom4(c.srv), 49700, "86d35949-83c9-4044-b424-db363231fd0c", c.ts)
	// A DCE-RPC request header (version 5.0, request, little-endian).
	pdu := make([]byte, 24+8)
	pdu[0], pdu[2], pdu[3], pdu[4] = 5, 0, 3, 0x10
	binary.LittleEndian.PutUint16(pdu[8:], uint16(len(pdu)))
	binary.LittleEndian.PutUint32(pdu[12:], 7)
	send(0, tcpPSH|tcpACK, pdu)
	s := w.Stats()
	if s.Flow.Flows[verdictRPC] != 1 || s.RPCConnections != 1 || s.RPCPDUs != 1 {
		t.Errorf("after the EPM answer: flows %v, %d DCE-RPC connections, %d PDUs; want the flow followed", s.Flow.Flows, s.RPCConnections, s.RPCPDUs)
	}
}

// TestFlowExpiry: idle entries leave the table on capture time, half-open
// ones sooner, and are counted.
func TestFlowExpiry(t *testing.T) {
	w := NewWorker(Options{}, &discardRecorder{}, nil)
	c := newTCPConv(445)
	b, ci := c.frame(0, tcpSYN, nil)
	w.Packet(b, ci, layers.LinkTypeEthernet)
	h := newTCPConv(80)
	h.cport = 2000
	for _, p := range []struct {
		dir   int
		flags uint8
		data  []byte
	}{{0, tcpSYN, nil}, {1, tcpSYN | tcpACK, nil}, {0, tcpPSH | tcpACK, []byte("GET /")}} {
		b, ci = h.frame(p.dir, p.flags, p.data)
		w.Packet(b, ci, layers.LinkTypeEthernet)
	}
	later := newTCPConv(80)
	later.cport = 3000
	later.ts = ci.Timestamp.Add(time.Minute)
	b, ci = later.frame(0, tcpSYN, nil)
	w.Packet(b, ci, layers.LinkTypeEthernet)
	w.Tick(ci.Timestamp.Add(2 * time.Second))
	if w.flows.n != 2 || w.stats.Evictions[evictIdleHalfOpen] != 1 {
		t.Errorf("after a minute: %d entries, evictions %v; want the half-open one gone", w.flows.n, w.stats.Evictions)
	}
	w.Tick(ci.Timestamp.Add(10 * time.Minute))
	if w.flows.n != 0 || w.stats.Evictions[evictIdle] != 1 {
		t.Errorf("after ten minutes: %d entries, evictions %v; want all gone", w.flows.n, w.stats.Evictions)
	}
}

// TestFlowTableProbesStayShort: a full table taking five times its size in
// new flows keeps probe chains as short as at the start. (Evicting always
// at one moving place once merged it into one cluster: a SYN flood then
// took 200 µs per packet.)
func TestFlowTableProbesStayShort(t *testing.T) {
	const bound = 1 << 14
	ft := newFlowTable(bound)
	for i := range 5 * bound {
		var k flowKey
		binary.BigEndian.PutUint32(k.a[:], uint32(i))
		k.pa = uint16(i)
		ft.insert(&k, int64(i), func(string) {})
	}
	total, longest := 0, 0
	for i := range ft.e {
		if ft.e[i].flags&flowUsed == 0 {
			continue
		}
		d := int((uint32(i) - ft.e[i].hash) & ft.mask)
		total += d
		longest = max(longest, d)
	}
	if avg := float64(total) / float64(ft.n); avg > 4 || longest > 1000 {
		t.Errorf("after eviction: average probe distance %.1f, longest %d", avg, longest)
	}
}
