package sensor

import (
	"encoding/binary"
	"encoding/json"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/google/gopacket/layers"

	"github.com/tschsensor/tschsensor/detect"
	"github.com/tschsensor/tschsensor/internal/flood"
)

// floodEvent is what TestFloodSummaries reads of a call event.
type floodEvent struct {
	Event struct {
		Kind, Action, Outcome, Start, End string
	}
	DCERPC *struct {
		Opnum     uint16 `json:"opnum"`
		CallID    uint32 `json:"call_id"`
		Fragments struct {
			Request int `json:"request"`
		} `json:"fragments"`
		Flood *struct {
			Calls      int      `json:"calls"`
			LastCallID uint32   `json:"last_call_id"`
			Opnums     []uint16 `json:"opnums"`
		} `json:"flood"`
	} `json:"dcerpc"`
}

// floodEvents runs packets through a worker with maxCalls, the resolver and
// the detector, and returns the call events and the worker's counters.
func floodEvents(t *testing.T, maxCalls int, pkts []plPacket) ([]floodEvent, *Stats) {
	t.Helper()
	var evs []floodEvent
	det := detect.New(detect.Options{}, func(ev *detect.Event) {
		if ev.Event.Kind != "event" {
			return
		}
		b, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		var fe floodEvent
		if err := json.Unmarshal(b, &fe); err != nil {
			t.Fatal(err)
		}
		evs = append(evs, fe)
	})
	res := NewResolver(directRecorder{det})
	w := NewWorker(Options{MaxCalls: maxCalls, PanicHook: func(r any) { t.Fatalf("panic: %v", r) }}, res, nil)
	w.SetFile("flood")
	for _, p := range pkts {
		w.Packet(p.data, p.ci, p.link)
	}
	w.Flush()
	res.Flush()
	det.Flush()
	return evs, w.Stats()
}

// floodChannel: a bind to ITaskSchedulerService on a dynamic port, then one
// unanswered request per opnum given (call ids from 2), one per segment,
// 1 ms apart; opnum 12 (SchRpcRun) carries a valid stub, 112 stands for a
// SchRpcRun whose stub does not decode, 212 for one that does not decode
// and differs from the others.
func floodChannel(t *testing.T, maxCalls int, opnums []uint16) ([]floodEvent, *Stats) {
	t.Helper()
	var pkts []plPacket
	c := newTCPConv(49700)
	send := func(dir int, flags uint8, p []byte) {
		b, ci := c.frame(dir, flags, p)
		pkts = append(pkts, plPacket{append([]byte(nil), b...), ci, layers.LinkTypeEthernet})
	}
	send(0, tcpSYN, nil)
	send(1, tcpSYN|tcpACK, nil)
	send(0, tcpACK, nil)
	ndr := ocSyntax(t, "8a885d04-1ceb-11c9-9fe8-08002b104860", 2, 0)
	send(0, tcpPSH|tcpACK, ocBind(1, 4280, []ocCtxElem{{0, ocSyntax(t, "86d35949-83c9-4044-b424-db363231fd0c", 1, 0), [][]byte{ndr}},
		{1, ocSyntax(t, "1ff70682-0a51-30e8-076d-740be8cee98b", 1, 0), [][]byte{ndr}}}))
	send(1, tcpPSH|tcpACK, ocBindAck(1, 4280, "49700", []ocResult{{0, 0, ndr}, {0, 0, ndr}}))
	for i, op := range opnums {
		stub := make([]byte, 8) // what every read-only operation accepts
		ctx := uint16(0)
		switch op {
		case 1002: // ATSVC NetrJobEnum, on context 1
			op, ctx = 2, 1
		case 65535: // SchRpcHighestVersion, the capture's clock stepping back
			op = 0
			c.ts = c.ts.Add(-5 * time.Millisecond)
		case 12: // SchRpcRun, valid
			stub = flood.RunStub()
		case 112: // SchRpcRun, a stub no server accepts
			op = 12
		case 212: // the same, its bytes different each time
			op = 12
			binary.LittleEndian.PutUint32(stub[4:], uint32(i))
		}
		for _, f := range ocRequest(uint32(2+i), ctx, op, stub, 4096) {
			send(0, tcpPSH|tcpACK, f)
		}
	}
	return floodEvents(t, maxCalls, pkts)
}

// TestFloodSummaryPipe: on \pipe\atsvc, requests on a context whose bind
// was not captured (interface unknown: only the opnum is known) are
// summarised when evicted, whatever their opnum; each SMB2 WRITE carrying
// one is answered, the DCE-RPC request never is.
func TestFloodSummaryPipe(t *testing.T) {
	const maxCalls, n = 16, 300
	c := &ocCapture{t: t, now: time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)}
	f := c.open(50123, 445)
	s := &ocSMB{f: f}
	s.negotiate()
	s.treeConnect(`\\srv\IPC$`)
	fid := s.create("atsvc", 1)
	for i := range n {
		s.write(fid, ocRequest(uint32(2+i), 0, uint16(i%3), make([]byte, 8), 4096)[0])
	}
	pkts := make([]plPacket, len(c.pkts))
	for i, p := range c.pkts {
		pkts[i] = plPacket{p.data, p.ci, layers.LinkTypeEthernet}
	}
	evs, st := floodEvents(t, maxCalls, pkts)
	calls, summaries := 0, 0
	for _, e := range evs {
		if e.DCERPC == nil {
			continue
		}
		if e.DCERPC.Flood == nil {
			calls++
			continue
		}
		summaries++
		calls += e.DCERPC.Flood.Calls
		if !slices.Equal(e.DCERPC.Flood.Opnums, []uint16{0, 1, 2}) {
			t.Errorf("summary's opnums %v, want [0 1 2]", e.DCERPC.Flood.Opnums)
		}
	}
	if calls != n || summaries != 1 || st.TschSummarised != n-maxCalls-1 {
		t.Errorf("%d calls in %d summaries, %d summarised; want %d in 1, %d", calls, summaries, st.TschSummarised, n, n-maxCalls-1)
	}
	if st.Anomalies["dcerpc_call_without_bind"] == 0 {
		t.Errorf("anomalies %v: want dcerpc_call_without_bind", st.Anomalies)
	}
}

func repeatOp(op uint16, n int) []uint16 {
	s := make([]uint16, n)
	for i := range s {
		s[i] = op
	}
	return s
}

// TestFloodSummaries: calls a channel past --max-calls ends unanswered are
// summarised when their operation changes nothing on the server (one event
// per operation and second of capture time, counting them), and reported
// one by one otherwise; every call is accounted for, in the events and in
// the counters.
func TestFloodSummaries(t *testing.T) {
	const maxCalls = 16
	mixed := repeatOp(0, 300)
	mixed[50] = 12 // SchRpcRun: it changes the server, so it stands alone
	var cycle []uint16
	for i := range 600 {
		cycle = append(cycle, []uint16{0, 2, 5, 6, 7, 8}[i%6])
	}
	var alternate []uint16 // valid and malformed SchRpcRun: the valid stay events
	for i := range 300 {
		alternate = append(alternate, []uint16{12, 112}[i%2])
	}
	var twoIfaces, backwards []uint16 // ITaskSchedulerService and ATSVC in turn; a clock stepping back
	for i := range 600 {
		twoIfaces = append(twoIfaces, []uint16{0, 1002}[i%2])
		backwards = append(backwards, []uint16{0, 65535}[i%2])
	}
	var many []uint16 // an attacker cycling through every opnum
	for i := range 3000 {
		many = append(many, uint16(3000+i))
	}
	for _, tc := range []struct {
		name   string
		opnums []uint16
		// summaries expected, the calls they hold and the opnums of the
		// first
		summaries, summarised int
		first                 []uint16
	}{
		{"read-only", repeatOp(0, 300), 1, 300 - maxCalls, []uint16{0}},
		{"read-only over three windows", repeatOp(0, 2500), 3, 2500 - maxCalls, []uint16{0}},
		{"changes the server", repeatOp(12, 300), 0, 0, nil},
		{"no such opnum", repeatOp(99, 300), 1, 300 - maxCalls, []uint16{99}},
		{"changes the server, malformed", repeatOp(112, 300), 1, 300 - maxCalls, []uint16{12}},
		{"changes the server, malformed each its own way", repeatOp(212, 300), 1, 300 - maxCalls, []uint16{12}},
		{"valid and malformed in turn", alternate, 1, (300 - maxCalls) / 2, []uint16{12}},
		{"one change in a read flood", mixed, 1, 300 - maxCalls - 1, []uint16{0}},
		{"six operations in turn", cycle, 1, 600 - maxCalls, []uint16{0, 2, 5, 6, 7, 8}},
		{"every opnum", many, 3, 3000 - maxCalls, many[:detect.MaxFloodOpnums]},
		{"two interfaces in turn", twoIfaces, 2, 600 - maxCalls, []uint16{0}},
		{"clock stepping back", backwards, 1, 600 - maxCalls, []uint16{0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			evs, st := floodChannel(t, maxCalls, tc.opnums)
			calls, summaries, summarised := 0, 0, 0
			perOp := map[uint16]int{}
			for _, e := range evs {
				if e.DCERPC == nil {
					t.Fatalf("event without dcerpc: %+v", e)
				}
				perOp[e.DCERPC.Opnum]++
				if e.Event.Outcome != "unknown" {
					t.Errorf("outcome %q, want unknown (no response)", e.Event.Outcome)
				}
				f := e.DCERPC.Flood
				if f == nil {
					calls++
					continue
				}
				if summaries == 0 && !slices.Equal(f.Opnums, tc.first) {
					t.Errorf("first summary's opnums %v, want %v", f.Opnums, tc.first)
				}
				summaries++
				summarised += f.Calls
				calls += f.Calls
				start, err1 := time.Parse(time.RFC3339Nano, e.Event.Start)
				end, err2 := time.Parse(time.RFC3339Nano, e.Event.End)
				if err1 != nil || err2 != nil || end.Sub(start) >= time.Second || f.Calls < 2 ||
					end.Sub(start) < time.Duration(f.Calls-1)*time.Millisecond && tc.name != "clock stepping back" {
					t.Errorf("summary %+v from %s to %s: want ≥ 2 calls, 1 ms apart, within one second", f, e.Event.Start, e.Event.End)
				}
				if e.DCERPC.Fragments.Request != f.Calls {
					t.Errorf("summary of %d calls has %d request fragments, want their total", f.Calls, e.DCERPC.Fragments.Request)
				}
				if f.LastCallID <= e.DCERPC.CallID {
					t.Errorf("summary: call ids %d..%d", e.DCERPC.CallID, f.LastCallID)
				}
			}
			if calls != len(tc.opnums) {
				t.Errorf("events account for %d calls, want all %d", calls, len(tc.opnums))
			}
			if summarised != tc.summarised || summaries != tc.summaries {
				t.Errorf("%d summaries of %d calls, want %d of %d", summaries, summarised, tc.summaries, tc.summarised)
			}
			if tc.name == "one change in a read flood" && perOp[12] != 1 {
				t.Errorf("SchRpcRun: %d events, want its own", perOp[12])
			}
			if st.TschCalls != uint64(len(tc.opnums)) || st.TschSummarised != uint64(summarised-summaries) {
				t.Errorf("counters: %d calls, %d summarised; want %d, %d", st.TschCalls, st.TschSummarised, len(tc.opnums), summarised-summaries)
			}
			if got := st.Anomalies["dcerpc_too_many_calls"]; got != uint64(len(tc.opnums)-maxCalls) {
				t.Errorf("dcerpc_too_many_calls %d, want %d", got, len(tc.opnums)-maxCalls)
			}
		})
	}
}

// TestAnsweredChannelsGiveBackRoom: a channel that held many calls at once
// and had them all answered keeps no more memory than one that held one at
// a time: thousands of such channels would otherwise each keep room for
// MaxCalls calls.
func TestAnsweredChannelsGiveBackRoom(t *testing.T) {
	const channels, calls = 1000, 200
	heap := func(pipelined bool) uint64 {
		w := NewWorker(Options{PanicHook: func(r any) { t.Fatalf("panic: %v", r) }}, &discardRecorder{}, nil)
		runtime.GC()
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		ndr := ocSyntax(t, "8a885d04-1ceb-11c9-9fe8-08002b104860", 2, 0)
		bind := ocBind(1, 4280, []ocCtxElem{{0, ocSyntax(t, "86d35949-83c9-4044-b424-db363231fd0c", 1, 0), [][]byte{ndr}}})
		ack := ocBindAck(1, 4280, "49700", []ocResult{{0, 0, ndr}})
		for i := range channels {
			c := newTCPConv(49700)
			c.cport = uint16(10000 + i)
			send := c.handshake(w)
			send(0, tcpPSH|tcpACK, bind)
			send(1, tcpPSH|tcpACK, ack)
			resp := func(id uint32) []byte { return ocResponse(id+2, 0, []byte{6, 0, 1, 0, 0, 0, 0, 0}) }
			for id := range uint32(calls) {
				send(0, tcpPSH|tcpACK, ocRequest(id+2, 0, 0, nil, 4096)[0])
				if !pipelined {
					send(1, tcpPSH|tcpACK, resp(id))
				}
			}
			for id := range uint32(calls) {
				if pipelined {
					send(1, tcpPSH|tcpACK, resp(id))
				}
			}
		}
		if s := w.Stats(); s.TschCalls != channels*calls {
			t.Fatalf("%d calls decoded, want %d", s.TschCalls, channels*calls)
		}
		runtime.GC()
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		runtime.KeepAlive(w)
		return after.HeapAlloc - before.HeapAlloc
	}
	one, many := heap(false), heap(true)
	t.Logf("%d channels: %d KB with one call at a time, %d KB with %d at once", channels, one>>10, many>>10, calls)
	if many > one+channels*1024 {
		t.Errorf("channels that held %d calls at once keep %d B more each than channels that held one", calls, (many-one)/channels)
	}
}
