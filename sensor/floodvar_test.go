package sensor

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/tschsensor/tschsensor/dissect"
	"github.com/tschsensor/tschsensor/internal/flood"
)

// Variants of the floods (internal/flood/variants.go): the same attacks as
// flood_test.go's, carried another way, must meet the same bounds and
// leave the atexec beside them reported.

// TestFloodVariantConnections: SYN floods to 135 and 139, 802.1Q tagged,
// over IPv6 and from every source port of a few addresses cost table
// entries, not connections, and do not hide the atexec.
func TestFloodVariantConnections(t *testing.T) {
	for _, kind := range []string{flood.SYN135, flood.SYN139, flood.SYNVLAN, flood.SYN6, flood.SYNPorts} {
		t.Run(kind, func(t *testing.T) {
			const flows = 4096
			lines, w := floodRun(t, kind, 5*flows, Options{MaxFlows: flows})
			wantAtexec(t, kind, lines)
			s := w.Stats()
			if w.flows.n > flows || s.Evictions[evictFullHalfOpen] == 0 || s.Evictions[evictFullActive] != 0 {
				t.Errorf("%d table entries (bound %d), evictions %v", w.flows.n, flows, s.Evictions)
			}
			if s.Connections != 1 {
				t.Errorf("%d connections reassembled, want only the atexec's", s.Connections)
			}
		})
	}
}

// TestFloodVariantRequests: unanswered requests on one channel carried by
// an SMB2 pipe's WRITEs (each answered) or transceive IOCTLs, by SMB1
// WRITE_ANDX and 60 to a TCP segment stay within --max-calls, every
// request is reported, and the atexec beside them is too. The answered
// pipe WRITEs are not held as responses without a request: they answer
// requests the sensor saw and does not track (100,000 held-response
// anomalies before, and a held table full of them).
func TestFloodVariantRequests(t *testing.T) {
	const n = 20000
	for _, kind := range []string{flood.PipeRequests, flood.IoctlRequests, flood.SMB1PipeRequests, flood.RPCRequestsBatched} {
		t.Run(kind, func(t *testing.T) {
			lines, w := floodRun(t, kind, n, Options{MaxCalls: 64, MaxPending: 128})
			wantAtexec(t, kind, lines)
			s := w.Stats()
			if got := s.Anomalies["dcerpc_too_many_calls"]; got != n-64 {
				t.Errorf("dcerpc_too_many_calls %d, want %d", got, n-64)
			}
			if calls, events := countCalls(t, lines, "SchRpcHighestVersion"); calls != n || events != 64+1 {
				t.Errorf("SchRpcHighestVersion: %d events for %d calls, want %d calls in %d events", events, calls, n, 64+1)
			}
			// Only the IOCTLs wait for an SMB answer.
			want := uint64(0)
			if kind == flood.IoctlRequests {
				want = n - 128
			}
			if got := s.Anomalies["smb_too_many_pending"]; got != want {
				t.Errorf("smb_too_many_pending %d, want %d", got, want)
			}
			if got := s.Anomalies["smb2_held_response_dropped"]; got != 0 {
				t.Errorf("smb2_held_response_dropped %d: answers to requests seen were held", got)
			}
		})
	}
}

// TestFloodVariantCreates: unanswered CREATEs ten to a segment, compounded
// ten to a message, and SMB1 NT_CREATE_ANDX stay within --max-pending.
func TestFloodVariantCreates(t *testing.T) {
	const n = 20000
	for _, kind := range []string{flood.CreatesBatched, flood.CreatesCompound, flood.SMB1Creates} {
		t.Run(kind, func(t *testing.T) {
			lines, w := floodRun(t, kind, n, Options{MaxPending: 128})
			wantAtexec(t, kind, lines)
			if got := w.Stats().Anomalies["smb_too_many_pending"]; got != n-128 {
				t.Errorf("smb_too_many_pending %d, want %d", got, n-128)
			}
		})
	}
}

// TestSMB1PendingAgeQueue: SMB1 requests never answered are evicted oldest
// first through the age queue (a scan of the pending map per request made
// 200,000 of them take 7.6 s), the queue stays a small multiple of what
// is pending, and message ids that wrap replace what they reuse.
func TestSMB1PendingAgeQueue(t *testing.T) {
	const n, bound = 70000, 128 // past 65,536: MIDs wrap
	w := NewWorker(Options{MaxPending: bound}, &discardRecorder{}, nil)
	c := &conn{w: w, env: &w.env, client: -1}
	smb := newSMBState(c)
	c.setApp(smb)
	frame := uint64(0)
	most := 0
	err := flood.Generate(flood.SMB1Creates, n, nil, func(ci gopacket.CaptureInfo, data []byte) error {
		dir, payload := tcpPayload(data)
		if len(payload) == 0 {
			return nil
		}
		frame++
		c.frame = frame
		c.half[dir].feed(c, dir, payload)
		if m := smb.smb1; m != nil {
			most = max(most, len(m.pendAge.q)-m.pendAge.head)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	m := smb.smb1
	if m == nil || len(m.pending) != bound {
		t.Fatalf("SMB1 state %v, want %d pending", m != nil, bound)
	}
	if most > 2*bound+64 {
		t.Errorf("age queue reached %d entries for %d pending", most, bound)
	}
	// The flood's requests carry MIDs 2, 3, ... (the tree connect has 1):
	// the last bound of them remain, oldest first.
	for i := n - bound; i < n; i++ {
		id, ok := m.pendAge.oldest(m.pendingLive)
		if k := smb1KeyOf(id); !ok || k.mid != uint16(2+i) {
			t.Fatalf("oldest pending: MID %d (%v), want %d", k.mid, ok, uint16(2+i))
		}
		delete(m.pending, smb1KeyOf(id))
	}
	if st := w.Stats(); st.Anomalies["smb_too_many_pending"] != n-bound {
		t.Errorf("anomalies %v", st.Anomalies)
	}
}

// tcpPayload returns an untagged Ethernet/IPv4/TCP frame's payload and its
// direction (0: to port 445).
func tcpPayload(frame []byte) (int, []byte) {
	ip := frame[14:]
	tcp := ip[int(ip[0]&15)*4:]
	dir := 1
	if binary.BigEndian.Uint16(tcp[2:]) == portSMB {
		dir = 0
	}
	return dir, tcp[int(tcp[12]>>4)*4:]
}

// TestFloodVariantBuffers: connections each holding most of a 65,000-byte
// DCE-RPC fragment (on 135 and on a port the endpoint mapper never named),
// or an unfinished 1 MiB message on 139, cannot take the worker past its
// budget. Fragments are under 64 KiB, and only buffers from 64 KiB up
// could be evicted: 400 of them took 28.7 MiB of a 24 MiB budget. Tiny
// out-of-order and overlapping segments cost reassembly pages within
// their bound.
func TestFloodVariantBuffers(t *testing.T) {
	const budget = 24 << 20
	for _, tc := range []struct {
		kind  string
		n     int
		evict bool
	}{
		{flood.BigFragment135, 400, true},
		{flood.BigFragmentDyn, 400, true},
		{flood.BigMessage139, 40, true},
		{flood.TinyOutOfOrder, 20000, false},
		{flood.Overlap, 20000, false},
		// The start last: taken mid-stream after two early segments, the
		// rest is before its start.
		{flood.BigMessageReversed, 40, false},
	} {
		t.Run(tc.kind, func(t *testing.T) {
			lines, w := floodRun(t, tc.kind, tc.n, Options{MemoryBudget: budget})
			wantAtexec(t, tc.kind, lines)
			s := w.Stats()
			if s.Memory.Peak > budget+DefaultMaxMessage/4 {
				t.Errorf("peak %d bytes accounted, budget %d", s.Memory.Peak, budget)
			}
			if ev := s.Evictions[evictBufferedMessage]; (ev > 0) != tc.evict || s.Anomalies["budget_message_evicted"] != ev {
				t.Errorf("evictions %v, anomalies %v: want buffered messages evicted %v, and counted", s.Evictions, s.Anomalies, tc.evict)
			}
			if w.mem.msgs != 0 || w.mem.head != nil {
				t.Errorf("%d buffered bytes still accounted after every connection ended", w.mem.msgs)
			}
		})
	}
}

// TestBudgetIdleBufferEvicted: a half between messages that kept the
// capacity of its last one gives that up under pressure without counting
// a loss or hunting for its next message.
func TestBudgetIdleBufferEvicted(t *testing.T) {
	w := NewWorker(Options{}, &discardRecorder{}, nil)
	h := &half{buf: make([]byte, 0, 8<<10)}
	w.settle(h)
	if !h.listed || w.mem.msgs != 8<<10 {
		t.Fatalf("an 8 KiB buffer: listed %v, %d accounted", h.listed, w.mem.msgs)
	}
	w.evictBuffer(h)
	if h.buf != nil || h.unsynced || w.mem.msgs != 0 || h.listed {
		t.Errorf("after eviction: buffer kept %v, unsynced %v, %d accounted, listed %v", h.buf != nil, h.unsynced, w.mem.msgs, h.listed)
	}
	if s := w.Stats(); s.Evictions[evictBufferedMessage] != 0 || s.Anomalies["budget_message_evicted"] != 0 {
		t.Errorf("a loss counted: %v %v", s.Evictions, s.Anomalies)
	}
}

// BenchmarkFloodSMB1Creates: 10,000 unanswered NT_CREATE_ANDX through a
// worker.
func BenchmarkFloodSMB1Creates(b *testing.B) { benchFlood(b, flood.SMB1Creates, 10000) }

// TestFloodVariantStubs: channels each sending a request whose fragments
// never end hold the worker's stub budget; the registration after them
// still gets its stub whole (the oldest calls' stubs are evicted, not the
// newest call's cut: before, the atexec's SchRpcRegisterTask came out
// truncated, outcome unknown), and what calls hold never passes the bound.
func TestFloodVariantStubs(t *testing.T) {
	const total = 8 << 20
	lines, w := floodRun(t, flood.Stubs, 24, Options{MaxStubTotal: total})
	wantAtexec(t, flood.Stubs, lines)
	s := w.Stats()
	wantEvicted(t, s, evictCallStub, "dcerpc_stub_evicted")
	if w.stubBytes != 0 {
		t.Errorf("%d stub bytes still accounted after every call finished", w.stubBytes)
	}
	truncated := 0
	for _, l := range lines {
		if strings.Contains(l, `"kind":"event"`) && strings.Contains(l, `"fragments":{"request":245`) && strings.Contains(l, `"truncated":true`) {
			truncated++
		}
	}
	// The newest held their stubs whole to the end: not truncated.
	if truncated == 0 || truncated == 24 {
		t.Errorf("%d of the 24 endless requests reported truncated", truncated)
	}
}

// TestStubAgeBound: the stub budget is never passed while endless
// requests stream in, and the age queue stays a small multiple of the
// calls holding stubs.
func TestStubAgeBound(t *testing.T) {
	const total = 4 << 20
	w := NewWorker(Options{MaxStubTotal: total}, &discardRecorder{}, nil)
	most, queue := 0, 0
	err := flood.Generate(flood.Stubs, 16, nil, func(ci gopacket.CaptureInfo, data []byte) error {
		w.Packet(data, ci, layers.LinkTypeEthernet)
		most = max(most, w.stubBytes)
		queue = max(queue, len(w.stubAge.q)-w.stubAge.head)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	w.Flush()
	// A call cut as the oldest keeps its tail (stubcut.go) until the
	// next one evicts it.
	if most > total+2*stubTail || most < total/2 {
		t.Errorf("stub bytes held reached %d, bound %d", most, total)
	}
	if queue > 2*16+1024 {
		t.Errorf("age queue reached %d entries for 16 calls", queue)
	}
}

// TestFloodVariantCallsTotal: channels each holding just under --max-calls
// unanswered requests stay within the worker's bound on calls in flight
// (a million of them took 1.1 GB), every request is still reported, and
// the atexec's registration, one call on its channel, keeps its answer.
func TestFloodVariantCallsTotal(t *testing.T) {
	const n, bound = 20000, 2000
	channels := map[*rpcChannel]bool{}
	// Every call in flight is in the queue, with the stale entries of
	// calls finished since (compacted once they may be half the bound).
	lines := floodWorkerBound(t, flood.RPCChannels, n, bound, Options{MaxCallsTotal: bound}, evictCallInFlight, "dcerpc_too_many_calls_total",
		func(w *Worker) (int, int) {
			return scanQueue(&w.callAge.fifo, func(c callRef) bool {
				channels[c.ch] = true
				return c.live() != nil
			})
		})
	// Ended as --max-calls ends them: the flood's in summaries.
	if calls, events := countCalls(t, lines, "SchRpcHighestVersion"); calls != n || events > n/5 {
		t.Errorf("SchRpcHighestVersion: %d events for %d calls, want %d calls in summaries", events, calls, n)
	}
	// Channels the bound emptied gave back what holding 250 calls took,
	// and no connection keeps more than 64 record keys.
	emptied := 0
	for ch := range channels {
		if len(ch.calls) == 0 {
			emptied++
			if cap(ch.age.q) != 0 {
				t.Fatalf("an emptied channel keeps an age queue of %d", cap(ch.age.q))
			}
		}
		if len(ch.c.keys) > 64 {
			t.Fatalf("a connection keeps %d record keys", len(ch.c.keys))
		}
	}
	if emptied == 0 {
		t.Error("no channel emptied by the bound")
	}
}

// TestFloodVariantPendingTotal: connections each holding just under
// MaxPending unanswered CREATEs stay within the worker's bound on pending
// requests, and the atexec among them is reported.
func TestFloodVariantPendingTotal(t *testing.T) {
	const n, bound = 20000, 2000
	floodWorkerBound(t, flood.CreatesConns, n, bound, Options{MaxPendingTotal: bound}, evictPendingRequest, "smb_too_many_pending_total",
		func(w *Worker) (int, int) {
			return scanQueue(&w.pendAll.fifo, func(r pendRef) bool { return r.o.pendingLive(r.id, r.seq) })
		})
}

// wantEvicted wants something evicted for reason, each eviction counted
// as the anomaly.
func wantEvicted(t *testing.T, s *Stats, reason, anomaly string) {
	t.Helper()
	if s.Evictions[reason] == 0 || s.Anomalies[anomaly] != s.Evictions[reason] {
		t.Errorf("evictions %v, anomalies %v: want %s evicted and counted as %s", s.Evictions, s.Anomalies, reason, anomaly)
	}
}

// floodWorkerBound runs a flood meant to pass one of the worker's bounds:
// the atexec among it must be reported and what the bound gave up counted
// (reason, anomaly). It then runs the flood again, a packet at a time, and
// scan, which returns how long the worker's queue for the bound is and how
// many of its entries are live, must never find more than bound live nor
// a queue longer than twice the bound. It returns the first run's events.
func floodWorkerBound(t *testing.T, kind string, n, bound int, opt Options, reason, anomaly string, scan func(*Worker) (queued, live int)) []string {
	t.Helper()
	lines, w := floodRun(t, kind, n, opt)
	wantAtexec(t, kind, lines)
	wantEvicted(t, w.Stats(), reason, anomaly)
	w = NewWorker(opt, &discardRecorder{}, nil)
	most, queued := 0, 0
	err := flood.Generate(kind, n, nil, func(ci gopacket.CaptureInfo, data []byte) error {
		w.Packet(data, ci, layers.LinkTypeEthernet)
		q, live := scan(w)
		most, queued = max(most, live), max(queued, q)
		return nil
	})
	if err != nil || most > bound || queued > 2*bound {
		t.Errorf("%s: %d live at most, %d queued, bound %d (%v)", kind, most, queued, bound, err)
	}
	return lines
}

// scanQueue returns how long a queue is and how many of its entries are
// live.
func scanQueue[T any](a *fifo[T], live func(T) bool) (queued, n int) {
	for _, x := range a.q[a.head:] {
		if live(x) {
			n++
		}
	}
	return a.len(), n
}

// countCalls counts the calls of an operation the events report, those in
// flood summaries included, and the events.
func countCalls(t *testing.T, lines []string, action string) (calls, events int) {
	t.Helper()
	for _, l := range lines {
		if !strings.Contains(l, `"action":"`+action+`"`) {
			continue
		}
		var e floodEvent
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatal(err)
		}
		events++
		if f := e.DCERPC.Flood; f != nil {
			calls += f.Calls
		} else {
			calls++
		}
	}
	return calls, events
}

// TestFloodVariantLongNames: unanswered CREATEs of 32,000-character names
// keep 512 bytes each, not 96 KB (12,000 of them took 1.2 GB), and the
// atexec among them is reported.
func TestFloodVariantLongNames(t *testing.T) {
	const n = 300
	lines, w := floodRun(t, flood.CreatesLong, n, Options{})
	wantAtexec(t, flood.CreatesLong, lines)
	if got := w.Stats().Anomalies["smb_name_too_long"]; got != n {
		t.Errorf("smb_name_too_long %d, want %d", got, n)
	}
	// The names kept, as a pending request holds them.
	w = NewWorker(Options{}, &discardRecorder{}, nil)
	c := &conn{w: w, env: &w.env, client: -1}
	smb := newSMBState(c)
	c.setApp(smb)
	err := flood.Generate(flood.CreatesLong, 3, nil, func(ci gopacket.CaptureInfo, data []byte) error {
		if dir, payload := tcpPayload(data); len(payload) > 0 {
			c.half[dir].feed(c, dir, payload)
		}
		return nil
	})
	if err != nil || len(smb.pending) != 3 {
		t.Fatalf("%d pending (%v)", len(smb.pending), err)
	}
	for _, r := range smb.pending {
		if len(r.name) > maxNameBytes || !utf8.ValidString(r.name) || !strings.HasPrefix(r.name, "\u30a2") || !strings.HasSuffix(r.name, "\u30a2") || !strings.Contains(r.name, "…") {
			t.Fatalf("name kept: %d bytes, valid %v: %.40q", len(r.name), utf8.ValidString(r.name), r.name)
		}
	}
}

// TestBoundName: names at the bound are kept whole, longer ones as head
// and tail on rune boundaries.
func TestBoundName(t *testing.T) {
	w := NewWorker(Options{}, &discardRecorder{}, nil)
	c := &conn{w: w, env: &w.env, client: -1}
	for _, name := range []string{
		strings.Repeat("a", maxNameBytes),
		strings.Repeat("a", maxNameBytes+1),
		`Windows\Tasks\` + strings.Repeat("\u00e9", 400) + `.job`,
		strings.Repeat("\U0001F600", 200),
	} {
		got := boundName(c, name)
		switch {
		case len(name) <= maxNameBytes && got != name:
			t.Errorf("%d bytes changed", len(name))
		case len(got) > maxNameBytes || !utf8.ValidString(got):
			t.Errorf("%d bytes kept as %d, valid %v", len(name), len(got), utf8.ValidString(got))
		case len(name) > maxNameBytes && (!strings.HasPrefix(name, got[:10]) || !strings.HasSuffix(name, got[len(got)-8:])):
			t.Errorf("head or tail lost: %q", got)
		}
	}
	if s := w.Stats(); s.Anomalies["smb_name_too_long"] != 3 {
		t.Errorf("anomalies %v", s.Anomalies)
	}
}

// TestFloodVariantOpens: connections each holding just under --max-files
// open handles stay within the worker's bound on open handles (2,000,000
// took 480 MB), and the atexec among them is reported.
func TestFloodVariantOpens(t *testing.T) {
	const n, bound = 20000, 2000
	floodWorkerBound(t, flood.Opens, n, bound, Options{MaxFilesTotal: bound}, evictOpenFile, "smb_too_many_files_total",
		func(w *Worker) (int, int) { return scanQueue(&w.filesAll.fifo, fileRef.live) })
}

// TestMaxFilesEvictsOldest: past --max-files the oldest handle is closed
// for the new one; before, the new one was refused, so handles opened
// first hid a pipe opened after them.
func TestMaxFilesEvictsOldest(t *testing.T) {
	w := NewWorker(Options{MaxFiles: 4}, &discardRecorder{}, nil)
	c := &conn{w: w, env: &w.env, client: -1}
	smb := newSMBState(c)
	ipc := newTree(`\\srv\IPC$`, dissect.ShareTypePipe)
	disk := newTree(`\\srv\C$`, dissect.ShareTypeDisk)
	var first *smbFile
	for i := range 4 {
		f := smb.openFile(1, dissect.FileID{byte(i)}, 2, disk, "junk.txt", 0, 1)
		if i == 0 {
			first = f
		}
	}
	f := smb.openFile(1, dissect.FileID{9}, 1, ipc, "atsvc", 0, 2)
	if f == nil || f.pipe == nil || smb.files[fileKey{1, dissect.FileID{9}}] != f {
		t.Fatal("the pipe opened past --max-files is not tracked")
	}
	if smb.files[fileKey{1, first.id}] != nil || len(smb.files) != 4 {
		t.Errorf("%d handles, the oldest still open %v", len(smb.files), smb.files[fileKey{1, first.id}] != nil)
	}
	if s := w.Stats(); s.Anomalies["smb_too_many_files"] != 1 || s.Evictions[evictOpenFile] != 1 {
		t.Errorf("anomalies %v, evictions %v", s.Anomalies, s.Evictions)
	}
}

// TestFloodVariantTrees: connections each holding just under --max-files
// connected trees stay within the worker's bound on trees (2,000,000 took
// 411 MB), and the atexec among them is reported.
func TestFloodVariantTrees(t *testing.T) {
	const n, bound = 20000, 2000
	floodWorkerBound(t, flood.Trees, n, bound, Options{MaxFilesTotal: bound}, evictTree, "smb_too_many_trees_total",
		func(w *Worker) (int, int) { return scanQueue(&w.treesAll.fifo, fileRef.live) })
}

// TestSortFileKeys: handles close in session order, then by id read as
// big-endian bytes (what the insertion sort it replaced gave).
func TestSortFileKeys(t *testing.T) {
	rnd := rand.New(rand.NewPCG(3, 4))
	k := make([]fileKey, 5000)
	for i := range k {
		k[i].session = uint64(rnd.IntN(4))
		for j := range k[i].id {
			k[i].id[j] = byte(rnd.IntN(3))
		}
	}
	sortFileKeys(k)
	for i := 1; i < len(k); i++ {
		a, b := k[i-1], k[i]
		if a.session > b.session || a.session == b.session && bytes.Compare(a.id[:], b.id[:]) > 0 {
			t.Fatalf("keys %d and %d out of order: %v %v", i-1, i, a, b)
		}
	}
}

// TestFloodVariantSessions: SESSION_SETUPs each naming a session of its own
// stay within the worker's bound on sessions (2,000,000 took 1.8 GB), the
// connections they came on keep queues the size of what they still hold,
// and the atexec among them is reported.
func TestFloodVariantSessions(t *testing.T) {
	const n, bound = 20000, 2000
	conns := map[*smbState]bool{}
	floodWorkerBound(t, flood.Sessions, n, bound, Options{MaxSessionsTotal: bound}, evictSession, "smb_too_many_sessions_total",
		func(w *Worker) (int, int) {
			return scanQueue(&w.sessionsAll.fifo, func(r fileRef) bool {
				conns[r.s] = true
				return r.live()
			})
		})
	for st := range conns {
		if held := len(st.sessions); cap(st.sessAge.q) > 4*held+256+64 || cap(st.pendAge.q) > 4*len(st.pending)+256+64 {
			t.Fatalf("a connection holding %d sessions and %d requests keeps queues of %d and %d", held, len(st.pending), cap(st.sessAge.q), cap(st.pendAge.q))
		}
	}
}
