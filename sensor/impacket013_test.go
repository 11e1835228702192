package sensor

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/tschsensor/tschsensor/detect"
	"github.com/tschsensor/tschsensor/dissect"
)

// logoffTap passes records on and keeps the SMB session ends.
type logoffTap struct {
	next    Recorder
	logoffs []*detect.FileOp
}

func (r *logoffTap) Call(c *detect.Call) { r.next.Call(c) }
func (r *logoffTap) File(f *detect.FileOp) {
	if f.Op == detect.FileOpLogoff {
		r.logoffs = append(r.logoffs, f)
	}
	r.next.File(f)
}

// imp013Facts is the part of an impacket013-* facts file this test reads.
type imp013Facts struct {
	User, Domain, Password string
	Client                 struct {
		Options []string `json:"options"`
	} `json:"client"`
	Calls []struct {
		Op        string `json:"op"`
		Path      string `json:"path"`
		Command   string `json:"command"`
		Arguments string `json:"arguments"`
		Flags     uint32 `json:"flags"`
		SessionID uint32 `json:"session_id"`
	} `json:"calls"`
}

// TestImpacket013Atexec replays the captures of Impacket 0.13.1's atexec.py
// (pcaps/gen/make-captures.sh impacket013-*) through worker, orderer and
// detector as Replay does, without and with the lab password. Each SMB
// LOGOFF reaches the detector with the session that registered the task
// (impacket's server answers LOGOFF with SessionId/UID 0: the request's is
// used), and the atexec alert is out before the detector is flushed: for
// -silentcommand and -session-id, sealed, no output file is read, and it is
// the LOGOFF that completes the chain, not the end of the window or input.
func TestImpacket013Atexec(t *testing.T) {
	for _, name := range []string{"impacket013-atexec-smb2", "impacket013-atexec-smb2-silent",
		"impacket013-atexec-smb2-session", "impacket013-atexec-smb1"} {
		t.Run(name, func(t *testing.T) {
			b, err := os.ReadFile("../pcaps/" + name + ".json")
			if err != nil {
				t.Fatal(err)
			}
			var f imp013Facts
			if err := json.Unmarshal(b, &f); err != nil {
				t.Fatal(err)
			}
			if len(f.Calls) != 4 || f.Calls[0].Op != "SchRpcRegisterTask" || f.Calls[1].Op != "SchRpcRun" || f.Password == "" {
				t.Fatalf("facts: %+v", f.Calls)
			}
			creds, err := dissect.ParseCredentials([]byte(f.Domain + `\` + f.User + ":" + f.Password))
			if err != nil {
				t.Fatal(err)
			}
			for _, opt := range []Options{{}, {Credentials: creds}} {
				var alerts, regs []*detect.Event
				det := detect.New(detect.Options{Observer: "imp013"}, func(e *detect.Event) {
					switch {
					case e.Event.Kind == "alert" && e.Rule.ID == detect.RuleAtExec:
						alerts = append(alerts, e)
					case e.Event.Kind == "event" && e.Event.Action == "SchRpcRegisterTask":
						regs = append(regs, e)
					}
				})
				ord := newOrderer(directRecorder{det})
				tap := &logoffTap{next: ord}
				w := NewWorker(opt, NewResolver(tap), nil)
				if err := replayFile(context.Background(), &orderedWorker{w, ord}, "../pcaps/"+name+".pcap", nil); err != nil {
					t.Fatal(err)
				}
				w.Flush()
				ord.Flush()
				opened := opt.Credentials != nil
				if len(regs) != 1 || regs[0].SMB == nil {
					t.Fatalf("opened=%v: %d registrations", opened, len(regs))
				}
				if len(tap.logoffs) != 1 || fmt.Sprintf("0x%016x", tap.logoffs[0].SMB.SessionID) != regs[0].SMB.SessionID ||
					tap.logoffs[0].SMB.SessionID == 0 {
					t.Errorf("opened=%v: logoffs %+v, registration on session %s", opened, tap.logoffs, regs[0].SMB.SessionID)
				}
				if len(alerts) != 1 {
					t.Fatalf("opened=%v: %d atexec alerts before the detector's flush, want 1", opened, len(alerts))
				}
				det.Flush()
				if len(alerts) != 1 {
					t.Fatalf("opened=%v: flush raised %d more", opened, len(alerts)-1)
				}
				a, silent := alerts[0], len(f.Client.Options) > 0
				if a.AtExec.OutputRead == silent || a.AtExec.Sealed == opened || !a.AtExec.TaskDeleted {
					t.Errorf("opened=%v options %v: atexec %+v", opened, f.Client.Options, *a.AtExec)
				}
				if got := strings.Contains(a.Event.Reason, "logged off without reading output"); got != (silent && !opened) {
					t.Errorf("opened=%v options %v: reason %q", opened, f.Client.Options, a.Event.Reason)
				}
				if !opened {
					continue
				}
				line, err := json.Marshal(a)
				if err != nil {
					t.Fatal(err)
				}
				got, reg := parseEvents(t, []string{string(line)})[0].Tsch.Task, f.Calls[0]
				if got.Path != reg.Path || got.Command != reg.Command || got.Arguments != reg.Arguments {
					t.Errorf("task %q %q %q, facts %q %q %q", got.Path, got.Command, got.Arguments, reg.Path, reg.Command, reg.Arguments)
				}
				if run := f.Calls[1]; run.Flags&0x4 != 0 && !strings.Contains(a.Event.Reason, "in session 1 (TASK_RUN_USE_SESSION_ID)") {
					t.Errorf("run flags %#x session %d: reason %q", run.Flags, run.SessionID, a.Event.Reason)
				}
			}
		})
	}
}
