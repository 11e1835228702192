package detect

import (
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tschsensor/tschsensor/dissect"
)

func TestRuleLogEvasion(t *testing.T) {
	tests := []struct {
		name, path, author, desc string
		why                      string // "" = no alert
	}{
		{"plain", `\Corp\Backup`, `CORP\admin`, "Nightly backup.\r\nCalls the agent.", ""},
		{"Microsoft task under \\Microsoft\\", `\Microsoft\Windows\Defrag\ScheduledDefrag`, "Microsoft Corporation", "", ""},
		{"Microsoft resource string", `\Microsoft\Windows\X`, `$(@%SystemRoot%\system32\sdengin2.dll,-101)`, "", ""},
		{"long but plausible description", `\Corp\Backup`, "admin", strings.Repeat("a", maxDescriptionRunes), ""},
		{"Microsoft author elsewhere", `\Updater`, "Microsoft Corporation", "", `Author claims Microsoft for a task outside \Microsoft\`},
		{"overlong author", `\Updater`, strings.Repeat("A", 300), "", "Author of 300 characters"},
		{"overlong description", `\Updater`, "x", strings.Repeat("padding ", 1000), "Description of 8000 characters"},
		{"newline in author", `\Updater`, "admin\r\nEventID 4698 cleared", "", `control character '\r' in Author`},
		{"bidi override in description", `\Updater`, "x", "update \u202egnp.exe", `control character '\u202e' in Description`},
		{"escape in description", `\Updater`, "x", "ok\x1b[2J", `control character '\x1b' in Description`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := run(t, newCall(0, dissect.IfaceITaskSchedulerService, opRegister, overTCP(),
				task(tt.path, &dissect.TaskInfo{Command: "x.exe", Author: tt.author, Description: tt.desc})))
			a := r.alerts(RuleLogEvasion)
			if tt.why == "" {
				if len(a) != 0 {
					t.Fatalf("alert: %s", a[0].Event.Reason)
				}
				return
			}
			if len(a) != 1 || a[0].Event.Reason != tt.why || a[0].Threat.Tactic.ID != "TA0005" {
				t.Fatalf("alerts %v, reason %q", r.ruleIDs(), reasonOf(a))
			}
		})
	}
	// Other operations carrying a task (a read-back) are not registrations.
	r := run(t, newCall(0, dissect.IfaceITaskSchedulerService, opRetrieve, overTCP(),
		task(`\Updater`, &dissect.TaskInfo{Author: "Microsoft"})))
	if len(r.alerts(RuleLogEvasion)) != 0 {
		t.Error("SchRpcRetrieveTask raised log evasion")
	}
}

func reasonOf(a []*Event) string {
	if len(a) == 0 {
		return ""
	}
	return a[0].Event.Reason
}

// xmlTask is a task whose XML digest is that of body.
func xmlTask(body string, flags uint32) callOpt {
	return func(c *Call) {
		sum := sha256.Sum256([]byte(body))
		task(`\Corp\Backup`, &dissect.TaskInfo{XMLSHA256: hex.EncodeToString(sum[:]), Command: body})(c)
		if c.Tsch.Register != nil {
			c.Tsch.Register.Flags = flags
		}
	}
}

func TestRuleTaskHijack(t *testing.T) {
	const its = dissect.IfaceITaskSchedulerService
	retrieve := func(at time.Duration) *Call { return newCall(at, its, opRetrieve, overTCP(), xmlTask("good", 0)) }
	update := func(at time.Duration, body string) *Call {
		return newCall(at, its, opRegister, overTCP(), xmlTask(body, dissect.TaskUpdate))
	}
	runTask := func(at time.Duration) *Call { return newCall(at, its, opRun, overTCP(), task(`\Corp\Backup`, nil)) }
	t.Run("retrieved, replaced, run, restored", func(t *testing.T) {
		steps := []any{retrieve(0), update(time.Second, "evil"), runTask(2 * time.Second), update(5*time.Second, "good")}
		r := run(t, steps...)
		a := r.alerts(RuleTaskHijack)
		if len(a) != 1 || a[0].Event.Severity != SeverityCritical {
			t.Fatalf("alerts %v", r.ruleIDs())
		}
		// The alert shows what ran, not the restored definition.
		if got := a[0].Tsch.(*dissect.TschInfo).Task.Command; got != "evil" {
			t.Errorf("alert's task %q, want the replacing one", got)
		}
		var calls []string
		for _, e := range r.evs {
			if e.Event.Kind == "event" {
				calls = append(calls, e.Event.ID)
			}
		}
		if !slices.Equal(a[0].Related.Events, calls) {
			t.Errorf("related %v, want the four calls %v", a[0].Related.Events, calls)
		}
	})
	t.Run("registered before, then hijacked", func(t *testing.T) {
		create := newCall(0, its, opRegister, overTCP(), xmlTask("good", dissect.TaskCreate))
		r := run(t, create, update(time.Hour, "evil"), runTask(time.Hour+time.Second), update(time.Hour+2*time.Second, "good"))
		if len(r.alerts(RuleTaskHijack)) != 1 {
			t.Fatalf("alerts %v", r.ruleIDs())
		}
	})
	negatives := []struct {
		name  string
		steps func() []any
	}{
		{"not restored", func() []any {
			return []any{retrieve(0), update(time.Second, "evil"), runTask(2 * time.Second)}
		}},
		{"restored without a run", func() []any {
			return []any{retrieve(0), update(time.Second, "evil"), update(5*time.Second, "good")}
		}},
		{"never seen before", func() []any {
			return []any{update(time.Second, "evil"), runTask(2 * time.Second), update(5*time.Second, "good")}
		}},
		{"update with the same XML", func() []any {
			return []any{retrieve(0), update(time.Second, "good"), runTask(2 * time.Second), update(5*time.Second, "good")}
		}},
		{"restored after the window", func() []any {
			return []any{retrieve(0), update(time.Second, "evil"), runTask(2 * time.Second), update(DefaultAtExecWindow+2*time.Second, "good")}
		}},
		{"deleted in between", func() []any {
			return []any{retrieve(0), update(time.Second, "evil"), runTask(2 * time.Second),
				newCall(3*time.Second, its, opDelete, overTCP(), task(`\Corp\Backup`, nil)), update(5*time.Second, "good")}
		}},
		{"an administrator's edit, run later", func() []any {
			return []any{retrieve(0), update(time.Second, "v2"), runTask(2 * time.Second), update(time.Minute, "v3")}
		}},
	}
	for _, n := range negatives {
		t.Run("negative: "+n.name, func(t *testing.T) {
			if r := run(t, n.steps()...); len(r.alerts(RuleTaskHijack)) != 0 {
				t.Errorf("alerts %v", r.ruleIDs())
			}
		})
	}
}

// TestHijackBounded: task state stays within MaxPairs.
func TestHijackBounded(t *testing.T) {
	h := newHijack(Options{AtExecWindow: time.Minute, MaxPairs: 8})
	a := &Alerts{emit: func(*Event) {}, stats: &Stats{}}
	for i := 0; i < 100; i++ {
		c := newCall(time.Duration(i)*time.Second, dissect.IfaceITaskSchedulerService, opRegister, overTCP(),
			task(`\T`+strings.Repeat("x", i), &dissect.TaskInfo{XMLSHA256: "h"}))
		h.Call(a, c, CallEvent(c, "t"))
	}
	if len(h.tasks) != 8 {
		t.Errorf("%d tasks held, bound 8", len(h.tasks))
	}
}

func TestRuleRecon(t *testing.T) {
	const its = dissect.IfaceITaskSchedulerService
	enum := func(at time.Duration) *Call { return newCall(at, its, 7, overTCP(), task(`\`, nil)) }
	r := run(t, enum(0), enum(time.Second), enum(time.Minute))
	if n := len(r.alerts(RuleTaskRecon)); n != 1 {
		t.Errorf("%d recon alerts for one burst, want 1", n)
	}
	r = run(t, enum(0), enum(DefaultAtExecWindow+time.Second))
	if n := len(r.alerts(RuleTaskRecon)); n != 2 {
		t.Errorf("%d recon alerts for two bursts a window apart, want 2", n)
	}
	// Reading one task's last run or missed runs is not enumeration.
	r = run(t, newCall(0, its, opLastRun, overTCP(), task(`\x`, nil)), newCall(time.Second, its, 18, overTCP(), task(`\x`, nil)))
	if len(r.alerts(RuleTaskRecon)) != 0 {
		t.Errorf("alerts %v", r.ruleIDs())
	}
}

func TestRuleTaskEnabled(t *testing.T) {
	const its = dissect.IfaceITaskSchedulerService
	if r := run(t, newCall(0, its, 19, overTCP(), task(`\x`, nil))); len(r.alerts(RuleTaskEnabled)) != 1 {
		t.Errorf("SchRpcEnableTask: alerts %v", r.ruleIDs())
	}
	// Reading a task's state (GetTaskInfo, which reports enabled) is not enabling it.
	if r := run(t, newCall(0, its, 17, overTCP(), task(`\x`, nil))); len(r.alerts(RuleTaskEnabled)) != 0 {
		t.Errorf("SchRpcGetTaskInfo: alerts %v", r.ruleIDs())
	}
}
