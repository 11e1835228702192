package sensor

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/tschsensor/tschsensor/detect"
)

// Cut tests: a sensor started in the middle of a session sees a capture
// that begins anywhere. Every project capture is cut before each SMB or
// DCE-RPC message in turn and replayed in memory; what the cut run reports
// is compared with what the whole capture gives. A call whose request begins
// after the cut must be reported with the same interface, operation, task
// path, command and arguments; an alert must be raised when every call
// behind it is (and, for the legacy task alert, the .job write too). Where the bytes cannot tell (a bind never seen on a port the
// endpoint mapper never named, a call cut inside its request), the missing
// call must be accounted for by a named anomaly, never silently lost.

// cutCall is what a cut run must reproduce of a call.
type cutCall struct {
	key    string // interface, operation, path, command, arguments, outcome
	frames []uint64
}

// cutRun is the result of one in-memory run.
type cutRun struct {
	calls  []cutCall
	ids    map[string]string // event id -> call key
	alerts []cutAlert
	anoms  map[string]uint64
}

type cutAlert struct {
	rule    string
	related []string // call keys behind the alert
	file    string   // file.path of the alert, when it names one
}

// cutEvent is the part of an event the comparison reads.
type cutEvent struct {
	Event struct{ Kind, ID, Action, Outcome string }
	Rule  *struct{ ID string }
	RPC   *struct {
		Interface struct{ Name string }
		Operation string
		Opnum     uint16
	} `json:"dcerpc"`
	Tsch *struct {
		Task *struct{ Path, Command, Arguments string }
		Job  *struct{ Command string }
	}
	Related *struct{ Events []string }
	Pcap    *struct{ Frames []uint64 }
	File    *struct{ Path string }
}

func (e *cutEvent) key() string {
	var b strings.Builder
	if e.RPC != nil {
		fmt.Fprintf(&b, "%s %s/%d", e.RPC.Interface.Name, e.RPC.Operation, e.RPC.Opnum)
	}
	if e.Tsch != nil && e.Tsch.Task != nil {
		fmt.Fprintf(&b, " path=%q cmd=%q args=%q", e.Tsch.Task.Path, e.Tsch.Task.Command, e.Tsch.Task.Arguments)
	}
	if e.Tsch != nil && e.Tsch.Job != nil {
		fmt.Fprintf(&b, " job=%q", e.Tsch.Job.Command)
	}
	fmt.Fprintf(&b, " %s", e.Event.Outcome)
	return b.String()
}

// runPackets replays packets through a worker, the resolver and the
// detector, as Replay does, without files.
func runPackets(t testing.TB, pkts []plPacket) cutRun {
	t.Helper()
	run := cutRun{ids: map[string]string{}}
	var evs []cutEvent
	det := detect.New(detect.Options{Observer: "cut"}, func(ev *detect.Event) {
		b, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		var ce cutEvent
		if err := json.Unmarshal(b, &ce); err != nil {
			t.Fatal(err)
		}
		evs = append(evs, ce)
	})
	res := NewResolver(directRecorder{det})
	w := NewWorker(Options{PanicHook: func(r any) { panic(r) }}, res, nil)
	w.SetFile("cut")
	for _, p := range pkts {
		w.Packet(p.data, p.ci, p.link)
	}
	w.Flush()
	res.Flush()
	det.Flush()
	st := *w.Stats()
	res.account(&st)
	run.anoms = st.Anomalies
	for i := range evs {
		e := &evs[i]
		switch e.Event.Kind {
		case "event":
			if e.RPC == nil {
				continue
			}
			c := cutCall{key: e.key()}
			if e.Pcap != nil {
				c.frames = e.Pcap.Frames
			}
			run.calls = append(run.calls, c)
			run.ids[e.Event.ID] = c.key
		case "alert":
			a := cutAlert{rule: e.Rule.ID}
			if e.File != nil {
				a.file = e.File.Path
			}
			if e.Related != nil {
				for _, id := range e.Related.Events {
					if k, ok := run.ids[id]; ok {
						a.related = append(a.related, k)
					}
				}
			}
			run.alerts = append(run.alerts, a)
		}
	}
	return run
}

// cutPoint is a frame that starts an SMB or DCE-RPC message.
type cutPoint struct {
	index int // packet index
	what  string
}

// cutPoints finds the packets whose TCP payload starts a message: an NBSS
// header with an SMB protocol id, or a DCE-RPC connection-oriented header.
func cutPoints(pkts []plPacket) []cutPoint {
	var pts []cutPoint
	var f frame
	for i, p := range pkts {
		if decodeFrame(p.data, p.link, &f) != decTCP || len(f.tcp) < 20 {
			continue
		}
		hl := int(f.tcp[12]>>4) * 4
		if hl < 20 || hl >= len(f.tcp) {
			continue
		}
		pl := f.tcp[hl:]
		switch {
		case len(pl) >= 8 && pl[0] == 0 && pl[5] == 'S' && pl[6] == 'M' && pl[7] == 'B':
			pts = append(pts, cutPoint{i, fmt.Sprintf("smb%x", pl[4])})
		case len(pl) >= 16 && pl[0] == 5 && pl[1] == 0 && pl[2] <= 20 && pl[4]&0xef == 0 && int(pl[8])|int(pl[9])<<8 >= 16:
			pts = append(pts, cutPoint{i, fmt.Sprintf("dcerpc%d", pl[2])})
		case len(pl) >= 8 && pl[0] == 0x81 && (binary.BigEndian.Uint16(f.tcp[2:]) == portNetBIOS):
			pts = append(pts, cutPoint{i, "nbss_request"})
		}
	}
	return pts
}

// isHandshake reports whether a packet is a SYN or SYN-ACK: without them a
// connection's client is learnt from ports and message content.
func isHandshake(p plPacket) bool {
	var f frame
	if decodeFrame(p.data, p.link, &f) != decTCP || len(f.tcp) < 20 {
		return false
	}
	return f.tcp[13]&tcpSYN != 0
}

// cutReasons are the anomalies that account for a call a cut run cannot
// report as the whole capture does, with what each means.
var cutReasons = map[string]string{
	"dcerpc_call_unknown_context":           "TCP channel without its bind on a port the endpoint mapper never named",
	"dcerpc_request_without_first_fragment": "the request's first fragments were before the cut",
	"dcerpc_call_without_bind":              "a channel whose bind was before the cut",
}

// cutFileAlerts are the alerts that stand on an SMB file write into a Tasks
// folder as well as on calls: a cut must also report that write (as the
// task_file_written_smb alert on the same file) for them to be expected.
var cutFileAlerts = map[string]bool{"legacy_task_created": true}

// cutAlertReasons are the anomalies that account for an alert a cut run
// cannot raise although every call behind it is reported.
var cutAlertReasons = map[string]string{
	"atexec": "smb_pipe_name_unknown", // the rule needs \pipe\atsvc
}

// TestCutEverywhere is the generator: every project capture, cut before
// every SMB/DCE-RPC message, with and without the TCP handshakes left in
// the rest of the capture.
func TestCutEverywhere(t *testing.T) {
	files, _ := filepath.Glob("../pcaps/*.pcap")
	if len(files) == 0 {
		t.Fatal("no captures in pcaps/")
	}
	// The shared corpus's positives too, when it is there: Windows clients
	// and servers (at.exe over SMB 3.1.1, schtasks over TCP with Kerberos).
	for _, name := range plPositives {
		if p := filepath.Join(plSharedDir, "pcaps", name); fileExists(p) && !testing.Short() {
			files = append(files, p)
		}
	}
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), filepath.Ext(file))
		if strings.Contains(name, "smb3-") {
			continue // encrypted: no calls visible whole or cut
		}
		t.Run(name, func(t *testing.T) {
			pkts := plLoad(t, file)
			full := runPackets(t, pkts)
			if len(full.calls) == 0 {
				t.Fatal("the whole capture reports no call")
			}
			var stats cutStats
			defer func() {
				t.Logf("%d cuts give the whole run's calls, %d lose some for a counted reason", stats.exact, stats.forgiven)
			}()
			pts := cutPoints(pkts)
			if len(pts) < 2 {
				t.Fatalf("%d message starts found", len(pts))
			}
			for _, pt := range pts {
				for _, noSYN := range []bool{false, true} {
					var kept []plPacket
					for i := pt.index; i < len(pkts); i++ {
						if noSYN && isHandshake(pkts[i]) {
							continue
						}
						kept = append(kept, pkts[i])
					}
					cutCheck(t, fmt.Sprintf("frame %d (%s) syn=%v", pt.index+1, pt.what, !noSYN), full, runPackets(t, kept), uint64(pt.index+1), &stats)
				}
			}
		})
	}
}

type cutStats struct{ exact, forgiven int }

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// cutCheck compares a cut run with the whole one.
func cutCheck(t *testing.T, where string, full, cut cutRun, first uint64, stats *cutStats) {
	t.Helper()
	// Calls the cut must give: every frame of theirs is kept.
	var want []string
	for _, c := range full.calls {
		if len(c.frames) > 0 && c.frames[0] >= first {
			want = append(want, c.key)
		}
	}
	var got []string
	for _, c := range cut.calls {
		got = append(got, c.key)
	}
	missing, extra := multisetDiff(want, got)
	// Each call the cut cannot give as the whole run does must be
	// accounted for by a per-call reason.
	var reasons []string
	var n uint64
	for r := range cutReasons {
		if cut.anoms[r] > 0 {
			reasons = append(reasons, fmt.Sprintf("%s=%d", r, cut.anoms[r]))
			n += cut.anoms[r]
		}
	}
	slices.Sort(reasons)
	if uint64(len(missing)) > n || uint64(len(extra)) > n {
		t.Errorf("cut before %s: calls differ beyond the counted reasons %v:\n  missing %q\n  extra %q\n  anomalies %v", where, reasons, missing, extra, cut.anoms)
	}
	if len(missing)+len(extra) > 0 {
		if os.Getenv("CUTDEBUG") != "" { // CUTDEBUG=1 go test -v: which cuts lose what, and why
			t.Logf("forgiven %s: missing %d extra %d reasons %v", where, len(missing), len(extra), reasons)
		}
		stats.forgiven++
	} else {
		stats.exact++
	}
	// Alerts: those whose calls are all reproduced.
	have := map[string]int{}
	for _, k := range got {
		have[k]++
	}
	written := map[string]bool{}
	for _, a := range cut.alerts {
		if a.rule == detect.RuleTaskFile {
			written[a.file] = true
		}
	}
	var wantAlerts []string
	for _, a := range full.alerts {
		ok := len(a.related) > 0
		for _, k := range a.related {
			if have[k] == 0 {
				ok = false
			}
		}
		if cutFileAlerts[a.rule] && !written[a.file] {
			ok = false
		}
		if ok {
			wantAlerts = append(wantAlerts, a.rule)
		}
	}
	var gotAlerts []string
	for _, a := range cut.alerts {
		gotAlerts = append(gotAlerts, a.rule)
	}
	if m, _ := multisetDiff(wantAlerts, gotAlerts); len(m) > 0 {
		for _, rule := range m {
			if r := cutAlertReasons[rule]; r != "" && cut.anoms[r] > 0 {
				continue
			}
			t.Errorf("cut before %s: alert %s missing (got %q), anomalies %v", where, rule, gotAlerts, cut.anoms)
		}
	}
}

// multisetDiff returns what is in want and not in got, and the reverse.
func multisetDiff(want, got []string) (missing, extra []string) {
	n := map[string]int{}
	for _, k := range got {
		n[k]++
	}
	for _, k := range want {
		if n[k] > 0 {
			n[k]--
			continue
		}
		missing = append(missing, k)
	}
	m := map[string]int{}
	for _, k := range want {
		m[k]++
	}
	for _, k := range got {
		if m[k] > 0 {
			m[k]--
			continue
		}
		extra = append(extra, k)
	}
	return missing, extra
}
