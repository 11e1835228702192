package sensor

import (
	"encoding/json"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/tschsensor/tschsensor/detect"
	"github.com/tschsensor/tschsensor/internal/flood"
)

// floodRun replays a flood built in memory, with the project's atexec
// capture spliced into its middle, through a worker, the resolver and the
// detector, and returns the JSON lines and the worker.
func floodRun(t *testing.T, kind string, n int, opt Options) ([]string, *Worker) {
	t.Helper()
	splice := plLoad(t, "../pcaps/impacket-atexec-smb2-clear.pcap")
	pkts := make([]flood.Packet, len(splice))
	for i, p := range splice {
		pkts[i] = flood.Packet{CI: p.ci, Data: p.data}
	}
	var lines []string
	det := detect.New(detect.Options{}, func(e *detect.Event) {
		b, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, string(b))
	})
	opt.PanicHook = func(r any) { t.Fatalf("panic: %v\n%s", r, debug.Stack()) }
	res := NewResolver(directRecorder{det})
	w := NewWorker(opt, res, nil)
	w.SetFile(kind)
	err := flood.Generate(kind, n, pkts, func(ci gopacket.CaptureInfo, data []byte) error {
		w.Packet(data, ci, layers.LinkTypeEthernet)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	w.Flush()
	res.Flush()
	det.Flush()
	return lines, w
}

// wantAtexec checks the spliced atexec came out whole: the registration with
// its path and command, and the atexec alert.
func wantAtexec(t *testing.T, name string, lines []string) {
	t.Helper()
	wantAtexecPath(t, name, `\\YtLXjkgE`, lines)
}

// wantAtexecPath is wantAtexec for the task path (JSON-escaped) of another
// capture.
func wantAtexecPath(t *testing.T, name, path string, lines []string) {
	t.Helper()
	var reg, alert bool
	for _, l := range lines {
		if strings.Contains(l, `"kind":"event"`) && strings.Contains(l, `"action":"SchRpcRegisterTask"`) &&
			strings.Contains(l, `"path":"`+path+`"`) && strings.Contains(l, `"command":"cmd.exe"`) && strings.Contains(l, `"outcome":"success"`) {
			reg = true
		}
		if strings.Contains(l, `"kind":"alert"`) && strings.Contains(l, `"rule":{"id":"atexec"`) {
			alert = true
		}
	}
	if !reg || !alert {
		t.Errorf("%s: registration with path and command %v, atexec alert %v; want both (%d lines)", name, reg, alert, len(lines))
	}
}

// TestFloodConnections: SYN floods, handshakes with one byte and handshakes
// with one out-of-order segment, larger than the flow table, do not hide
// the atexec inside them, and cost table entries, not connections.
func TestFloodConnections(t *testing.T) {
	for _, kind := range []string{flood.SYN, flood.Handshake1, flood.OutOfOrder} {
		t.Run(kind, func(t *testing.T) {
			const flows = 4096
			lines, w := floodRun(t, kind, 5*flows, Options{MaxFlows: flows})
			wantAtexec(t, kind, lines)
			s := w.Stats()
			if w.flows.n > flows || s.Evictions[evictFullHalfOpen]+s.Evictions[evictFullUndecide] == 0 || s.Evictions[evictFullActive] != 0 {
				t.Errorf("%d table entries (bound %d), evictions %v", w.flows.n, flows, s.Evictions)
			}
			// A flood flow whose half-open entry made room for one of the
			// atexec's (the table's seed is random, so now and then one is
			// a neighbour) and then sends data to 445 is followed
			// mid-stream: a new connection to 445 is always admitted.
			if s.Connections < 1 || s.Connections > 1+s.Evictions[evictFullHalfOpen] {
				t.Errorf("%d connections reassembled, want only the atexec's (and at most one per half-open entry evicted: %d)",
					s.Connections, s.Evictions[evictFullHalfOpen])
			}
		})
	}
}

// TestFloodUnansweredRequests: unanswered DCE-RPC requests on one channel
// and unanswered SMB2 CREATEs stay within their per-channel bounds, oldest
// first, and the atexec beside them is reported.
func TestFloodUnansweredRequests(t *testing.T) {
	const n = 20000
	t.Run(flood.RPCRequests, func(t *testing.T) {
		lines, w := floodRun(t, flood.RPCRequests, n, Options{MaxCalls: 64})
		wantAtexec(t, flood.RPCRequests, lines)
		if got := w.Stats().Anomalies["dcerpc_too_many_calls"]; got != n-64 {
			t.Errorf("dcerpc_too_many_calls %d, want %d", got, n-64)
		}
		// Every request is reported: one event each for those still waiting at the
		// end, the evicted ones in a summary (floodsummary_test.go).
		calls, events := countCalls(t, lines, "SchRpcHighestVersion")
		if calls != n || events != 64+1 {
			t.Errorf("SchRpcHighestVersion: %d events for %d calls, want %d calls in %d events", events, calls, n, 64+1)
		}
	})
	t.Run(flood.RPCRuns, func(t *testing.T) {
		// Calls that would change the server are never summarised.
		lines, _ := floodRun(t, flood.RPCRuns, n, Options{MaxCalls: 64})
		wantAtexec(t, flood.RPCRuns, lines)
		runs := 0
		for _, l := range lines {
			if strings.Contains(l, `"action":"SchRpcRun"`) && strings.Contains(l, `"kind":"event"`) {
				runs++
				if strings.Contains(l, `"flood":`) {
					t.Fatalf("SchRpcRun in a flood summary: %s", l)
				}
			}
		}
		if runs != n+1 {
			t.Errorf("%d SchRpcRun events, want one per request (%d) and the atexec's", runs, n+1)
		}
	})
	t.Run(flood.Creates, func(t *testing.T) {
		lines, w := floodRun(t, flood.Creates, n, Options{MaxPending: 128})
		wantAtexec(t, flood.Creates, lines)
		if got := w.Stats().Anomalies["smb_too_many_pending"]; got != n-128 {
			t.Errorf("smb_too_many_pending %d, want %d", got, n-128)
		}
	})
}

// TestAgeQueue: the oldest live entry comes first, stale and reused ids are
// skipped, and the queue stays a small multiple of what is live.
func TestAgeQueue(t *testing.T) {
	live := map[uint64]uint64{}
	var q ageQueue
	isLive := func(id, seq uint64) bool { s, ok := live[id]; return ok && s == seq }
	for seq := uint64(1); seq <= 10000; seq++ {
		id := seq % 300
		live[id] = seq
		q.push(id, seq)
		q.compact(len(live), isLive)
		if len(q.q)-q.head > 2*len(live)+64 {
			t.Fatalf("queue %d long for %d live entries", len(q.q)-q.head, len(live))
		}
	}
	// Ids 0..299 were last pushed in the order 9701..10000.
	for want := uint64(9701); want <= 10000; want++ {
		id, ok := q.oldest(isLive)
		if !ok || live[id] != want {
			t.Fatalf("oldest: id %d (seq %d), %v; want seq %d", id, live[id], ok, want)
		}
		delete(live, id)
	}
	if _, ok := q.oldest(isLive); ok {
		t.Error("an entry after all were taken")
	}
}

// TestFloodBigMessages: connections each holding an unfinished large SMB
// message cannot take the worker past its memory budget (the oldest buffers
// are given up, counted), and the atexec beside them is reported.
func TestFloodBigMessages(t *testing.T) {
	const budget = 24 << 20
	lines, w := floodRun(t, flood.BigMessage, 40, Options{MemoryBudget: budget})
	wantAtexec(t, flood.BigMessage, lines)
	s := w.Stats()
	// One delivery may pass the budget before the oldest buffer goes.
	if s.Memory.Peak > budget+DefaultMaxMessage/4 {
		t.Errorf("peak %d bytes accounted, budget %d", s.Memory.Peak, budget)
	}
	if s.Evictions[evictBufferedMessage] == 0 || s.Anomalies["budget_message_evicted"] != s.Evictions[evictBufferedMessage] {
		t.Errorf("evictions %v, anomalies %v: want buffered messages evicted and counted", s.Evictions, s.Anomalies)
	}
	if w.mem.msgs != 0 || w.mem.head != nil {
		t.Errorf("%d buffered bytes still accounted after every connection ended", w.mem.msgs)
	}
	t.Logf("peak %.1f MiB of %.1f MiB, evictions %v", float64(s.Memory.Peak)/(1<<20), float64(budget)/(1<<20), s.Evictions)
}

// BenchmarkFloodRPCRequests: 10,000 unanswered requests on one channel
// through worker, resolver and detector (no output).
func BenchmarkFloodRPCRequests(b *testing.B) { benchFlood(b, flood.RPCRequests, 10000) }

// benchFlood runs n requests of a flood through worker, resolver and
// detector (no output).
func benchFlood(b *testing.B, kind string, n int) {
	var pkts []plPacket
	err := flood.Generate(kind, n, nil, func(ci gopacket.CaptureInfo, data []byte) error {
		pkts = append(pkts, plPacket{append([]byte(nil), data...), ci, layers.LinkTypeEthernet})
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		det := detect.New(detect.Options{}, func(*detect.Event) {})
		w := NewWorker(Options{}, NewResolver(directRecorder{det}), nil)
		for i := range pkts {
			w.Packet(pkts[i].data, pkts[i].ci, pkts[i].link)
		}
		w.Flush()
		det.Flush()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/request")
}

// TestLargeRegistration: a SchRpcRegisterTask whose XML is padded past
// --max-message (all of it in one SMB2 WRITE, one pipe-transceive IOCTL or
// one SMB1 WRITE_ANDX) or past --max-stub (one fragment per WRITE, 4.4 MB of
// stub) is reported with its path, command, user, flags and outcome,
// flagged oversized, with the atexec alert.
func TestLargeRegistration(t *testing.T) {
	captures := map[string][]flood.Packet{}
	for _, name := range []string{"impacket-atexec-smb2-clear", "impacket-atexec-smb1-clear"} {
		for _, p := range plLoad(t, "../pcaps/"+name+".pcap") {
			captures[name] = append(captures[name], flood.Packet{CI: p.ci, Data: p.data})
		}
	}
	for _, tc := range []struct {
		name          string
		capture, path string
		pad, perWrite int
		anomaly       string
		maxMessage    int
	}{
		{"one 1.2 MB WRITE", "impacket-atexec-smb2-clear", `\\YtLXjkgE`, 600000, 0, "", 0},
		{"2.2 MB XML", "impacket-atexec-smb2-clear", `\\YtLXjkgE`, 2200000, 1, "dcerpc_stub_too_large", 0},
		{"one 1.2 MB IOCTL", "impacket-atexec-smb2-clear", `\\YtLXjkgE`, 600000, -1, "", 0},
		{"one 1.2 MB SMB1 WRITE_ANDX", "impacket-atexec-smb1-clear", `\\AzcTtiyO`, 600000, 0, "", 0},
		// 68 KB WRITE_ANDXs past a 32 KiB --max-message: the framer
		// follows the PDUs from one streamed WRITE to the next.
		{"SMB1 WRITE_ANDXs of 16 fragments past --max-message", "impacket-atexec-smb1-clear", `\\AzcTtiyO`, 600000, 16, "", 32 << 10},
	} {
		pkts := captures[tc.capture]
		var lines []string
		det := detect.New(detect.Options{}, func(e *detect.Event) {
			b, _ := json.Marshal(e)
			lines = append(lines, string(b))
		})
		w := NewWorker(Options{MaxMessage: tc.maxMessage, PanicHook: func(r any) { t.Fatalf("panic: %v", r) }}, NewResolver(directRecorder{det}), nil)
		err := flood.Registration(pkts, tc.pad, tc.perWrite, func(ci gopacket.CaptureInfo, data []byte) error {
			w.Packet(data, ci, layers.LinkTypeEthernet)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		w.Flush()
		det.Flush()
		wantAtexecPath(t, tc.name, tc.path, lines)
		var reg string
		for _, l := range lines {
			if strings.Contains(l, `"kind":"alert"`) && strings.Contains(l, `"rule":{"id":"remote_task_registered"`) {
				reg = l
			}
		}
		for _, want := range []string{`"xml_oversized":true`, `oversized task definition`, `"name":"alice"`, `"outcome":"success"`, `"flags":2`} {
			if !strings.Contains(reg, want) {
				t.Errorf("%s: registration alert lacks %s: %.600s", tc.name, want, reg)
			}
		}
		s := w.Stats()
		if s.Anomalies["tsch_task_xml_oversized"] != 1 || tc.anomaly != "" && s.Anomalies[tc.anomaly] != 1 {
			t.Errorf("%s: anomalies %v", tc.name, s.Anomalies)
		}
	}
}

// TestFloodPlausibleHandshakes: handshakes each followed by an SMB2 start
// must become connections; past MaxConnections the oldest that carried no
// message is ended (its flow ignored), and the atexec among them is not.
func TestFloodPlausibleHandshakes(t *testing.T) {
	const conns = 256
	lines, w := floodRun(t, flood.HandshakeHeader, 20*conns, Options{MaxConnections: conns})
	wantAtexec(t, flood.HandshakeHeader, lines)
	s := w.Stats()
	if got := s.Evictions[evictConnNoMessage]; got < 19*conns {
		t.Errorf("%d connections evicted, want at least %d", got, 19*conns)
	}
	if s.Flow.Flows[verdictIgnored] < 19*conns {
		t.Errorf("flows %v: want the evicted ones ignored", s.Flow.Flows)
	}
	// The assembler really lets them go: the count never passes the bound.
	w = NewWorker(Options{MaxConnections: conns}, &discardRecorder{}, nil)
	most := 0
	err := flood.Generate(flood.HandshakeHeader, 20*conns, nil, func(ci gopacket.CaptureInfo, data []byte) error {
		w.Packet(data, ci, layers.LinkTypeEthernet)
		most = max(most, w.active)
		return nil
	})
	if err != nil || most > conns+1 {
		t.Errorf("%d connections held at most, bound %d (%v)", most, conns, err)
	}
}

// TestHiddenRegistration: a registration whose Actions, Principals and
// Settings sit between 2 MB of comment on each side (the first holding a
// decoy Actions Windows ignores) is reported with its command, arguments,
// run-as and hidden flag, flagged oversized, with the registration alert:
// over SMB2 (one fragment per WRITE, and one WRITE), SMB1 and TCP.
func TestHiddenRegistration(t *testing.T) {
	pad := flood.Padding{Before: 2 << 20, After: 2 << 20, Decoy: `<Actions><Exec><Command>decoy.exe</Command></Exec></Actions>`}
	for _, tc := range []struct {
		name, capture string
		perWrite      int
		want          []string
	}{
		{"SMB2 fragment per WRITE", "impacket-atexec-smb2-clear", 1, []string{`"path":"\\YtLXjkgE"`, `"command":"cmd.exe"`, `"arguments":"/C `}},
		{"SMB2 one WRITE", "impacket-atexec-smb2-clear", 0, []string{`"path":"\\YtLXjkgE"`, `"command":"cmd.exe"`, `"arguments":"/C `}},
		{"SMB1 WRITE_ANDXs", "impacket-atexec-smb1-clear", 16, []string{`"path":"\\AzcTtiyO"`, `"command":"cmd.exe"`, `"arguments":"/C `}},
		{"TCP", "gomsrpc-schtask-tcp-connect", 0, []string{`"path":"\\Microsoft\\Windows\\TschLab\\GoMsrpcTcpConnect"`, `"command":"rundll32.exe"`, `"arguments":"C:\\ProgramData`}},
	} {
		var pkts []flood.Packet
		for _, p := range plLoad(t, "../pcaps/"+tc.capture+".pcap") {
			pkts = append(pkts, flood.Packet{CI: p.ci, Data: p.data})
		}
		var lines []string
		det := detect.New(detect.Options{}, func(e *detect.Event) {
			b, _ := json.Marshal(e)
			lines = append(lines, string(b))
		})
		w := NewWorker(Options{PanicHook: func(r any) { t.Fatalf("panic: %v", r) }}, NewResolver(directRecorder{det}), nil)
		err := flood.RegistrationPadded(pkts, pad, tc.perWrite, func(ci gopacket.CaptureInfo, data []byte) error {
			w.Packet(data, ci, layers.LinkTypeEthernet)
			return nil
		})
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		w.Flush()
		det.Flush()
		var ev, alert string
		for _, l := range lines {
			if strings.Contains(l, `"kind":"event"`) && strings.Contains(l, `"action":"SchRpcRegisterTask"`) {
				ev = l
			}
			if strings.Contains(l, `"kind":"alert"`) && strings.Contains(l, `"rule":{"id":"remote_task_registered"`) {
				alert = l
			}
		}
		for _, want := range append(tc.want, `"run_as":"S-1-5-18"`, `"hidden":true`, `"xml_oversized":true`, `"outcome":"success"`) {
			if !strings.Contains(ev, want) || !strings.Contains(alert, want) {
				t.Errorf("%s: event or registration alert lacks %s: %.900s", tc.name, want, ev)
			}
		}
		if strings.Contains(strings.Join(lines, "\n"), "decoy.exe") {
			t.Errorf("%s: the command inside a comment was reported", tc.name)
		}
		if s := w.Stats(); s.Anomalies["tsch_task_xml_oversized"] != 1 || s.Anomalies["tsch_task_xml_scan_truncated"] != 0 {
			t.Errorf("%s: anomalies %v", tc.name, s.Anomalies)
		}
		if w.stubBytes != 0 {
			t.Errorf("%s: %d stub bytes still held after the call finished", tc.name, w.stubBytes)
		}
	}
}
