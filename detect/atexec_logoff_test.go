package detect

import (
	"strings"
	"testing"
	"time"

	"github.com/tschsensor/tschsensor/dissect"
)

// logoff is the record the sensor passes when SMB session sid ends.
func logoff(at time.Duration, sid uint64) *FileOp {
	f := fileOp(at, "", "", FileOpLogoff, 0)
	f.SMB = SMBContext{Version: 2, Dialect: "2.1", SessionID: sid}
	return f
}

// TestAtExecLogoffCompletes: a sealed chain (atexec -silentcommand or
// -session-id: no output file) waits for an output read that never comes;
// the LOGOFF of the SMB session that registered the task completes it at
// once instead of when its window ends, and says why. A LOGOFF of another
// session, or one before the task is deleted, does not.
func TestAtExecLogoffCompletes(t *testing.T) {
	const sid = 0x4000c000025 // newCall's session
	chain := func() []any {
		return []any{
			newCall(0, dissect.IfaceITaskSchedulerService, opRegister, sealed()),
			newCall(20*time.Millisecond, dissect.IfaceITaskSchedulerService, opRun, sealed()),
			newCall(30*time.Millisecond, dissect.IfaceITaskSchedulerService, opLastRun, sealed()),
			newCall(40*time.Millisecond, dissect.IfaceITaskSchedulerService, opDelete, sealed()),
		}
	}
	cases := []struct {
		name   string
		steps  []any
		raised bool // before Flush
		after  int  // alerts after Flush
	}{
		{"logoff of the session", append(chain(), logoff(50*time.Millisecond, sid)), true, 1},
		{"logoff of another session", append(chain(), logoff(50*time.Millisecond, sid+1)), false, 1},
		// Run but never deleted: no atexec chain, whenever it is closed.
		{"logoff before the delete", append(chain()[:3], logoff(35*time.Millisecond, sid)), false, 0},
		{"no logoff", chain(), false, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := &recorder{}
			d := New(Options{Observer: "test"}, r.emit)
			for _, s := range tc.steps {
				switch s := s.(type) {
				case *Call:
					d.Call(s)
				case *FileOp:
					d.File(s)
				}
			}
			if n := len(r.alerts(RuleAtExec)); n != map[bool]int{true: 1, false: 0}[tc.raised] {
				t.Fatalf("%d atexec alerts before flush, want raised=%v", n, tc.raised)
			}
			if d.Stats().FileOps != 0 {
				t.Errorf("a logoff counted as %d file operations", d.Stats().FileOps)
			}
			d.Flush()
			a := r.alerts(RuleAtExec)
			if len(a) != tc.after {
				t.Fatalf("%d atexec alerts after flush", len(a))
			}
			if len(a) == 0 {
				return
			}
			reason := a[0].Event.Reason
			if got := strings.Contains(reason, "logged off without reading output"); got != tc.raised {
				t.Errorf("reason %q: logoff mentioned %v, want %v", reason, got, tc.raised)
			}
			// No output file was seen: the reason must not claim file names matched.
			if !strings.HasSuffix(reason, "stubs sealed: matched on operations") {
				t.Errorf("reason %q", reason)
			}
		})
	}
}

// TestAtExecSessionRun: atexec -session-id runs the task in a user's
// session (SchRpcRun with TASK_RUN_USE_SESSION_ID); the alert says which.
func TestAtExecSessionRun(t *testing.T) {
	withSession := func(c *Call) {
		c.Tsch.Run = &dissect.RunInfo{Flags: taskRunUseSessionID, SessionID: 1}
	}
	r := run(t,
		newCall(0, dissect.IfaceITaskSchedulerService, opRegister, task(`\ytsZxqpB`, &dissect.TaskInfo{Command: "whoami", Arguments: "/all"})),
		newCall(20*time.Millisecond, dissect.IfaceITaskSchedulerService, opRun, task(`\ytsZxqpB`, nil), withSession),
		newCall(40*time.Millisecond, dissect.IfaceITaskSchedulerService, opDelete, task(`\ytsZxqpB`, nil)),
	)
	a := r.alerts(RuleAtExec)
	if len(a) != 1 || !strings.Contains(a[0].Event.Reason, "run on demand; in session 1 (TASK_RUN_USE_SESSION_ID)") {
		t.Fatalf("alerts %v: %+v", r.ruleIDs(), a)
	}
}
