package detect

import (
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tschsensor/tschsensor/dissect"
)

func mustRules(t *testing.T, body string) *Ruleset {
	t.Helper()
	rs, err := ParseRules("test.yaml", []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

// runRules is run with a rules file in force.
func runRules(t *testing.T, rs *Ruleset, steps ...any) (*recorder, *Detector) {
	t.Helper()
	r := &recorder{}
	var p atomic.Pointer[Ruleset]
	p.Store(rs)
	d := New(Options{Observer: "test", Rules: &p}, r.emit)
	for _, s := range steps {
		switch s := s.(type) {
		case *Call:
			d.Call(s)
		case *FileOp:
			d.File(s)
		}
	}
	d.Flush()
	return r, d
}

// registration is a suspicious registration by CORP\Administrator from
// 10.1.1.2 to 10.1.1.130.
func registration() *Call {
	return newCall(0, dissect.IfaceITaskSchedulerService, opRegister, overTCP(), func(c *Call) {
		c.User.Domain = "CORP"
		c.User.User = "Administrator"
	}, task(`\Veeam\Job1`, &dissect.TaskInfo{Command: `C:\Program Files\Veeam\agent.exe`, Arguments: "-run nightly"}))
}

func TestSuppressEntries(t *testing.T) {
	tests := []struct {
		name  string
		entry string
		hide  bool
	}{
		{"rule alone", "rule: remote_task_registered", true},
		{"rule list", "rule: [atexec, remote_task_registered]", true},
		{"other rule", "rule: atexec", false},
		{"all rules, source CIDR", "source: [10.1.1.0/24]", true},
		{"source address", "source: 10.1.1.2", true},
		{"other source", "source: [10.1.2.0/24, 10.1.1.3]", false},
		{"destination", "destination: [10.1.1.130]", true},
		{"other destination", "destination: [10.1.1.131]", false},
		{"user, any case", "user: [ADMINISTRATOR]", true},
		{"domain\\user", `user: ['corp\administrator']`, true},
		{"other user", "user: [svc_backup]", false},
		{"task path", `task_path: '^\\Veeam\\'`, true},
		{"other task path", `task_path: '^\\Backup\\'`, false},
		{"command line", `command: 'agent\.exe -run'`, true},
		{"other command", `command: 'powershell'`, false},
		{"every condition", "rule: remote_task_registered\n    source: [10.1.1.0/24]\n    user: [administrator]\n    task_path: Veeam", true},
		{"one condition fails", "rule: remote_task_registered\n    source: [10.1.1.0/24]\n    user: [someone]", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs := mustRules(t, "suppress:\n  - "+tt.entry+"\n    reason: r\n")
			r, d := runRules(t, rs, registration())
			got := len(r.alerts(RuleTaskRegistered)) == 0
			if got != tt.hide {
				t.Fatalf("suppressed %v, want %v", got, tt.hide)
			}
			n := uint64(0)
			if tt.hide {
				n = 1
			}
			if s := rs.Suppressions(); len(s) != 1 || s[0].Count != n || d.Stats().Suppressed != n {
				t.Errorf("counts %+v, stats %+v", s, d.Stats())
			}
			if len(r.evs) == 0 || r.evs[0].Event.Kind != "event" {
				t.Error("the call event itself was suppressed")
			}
		})
	}
}

func TestSeverityOverride(t *testing.T) {
	rs := mustRules(t, "severity:\n  remote_task_registered: critical\n  remote_task_recon: 2\n")
	r, _ := runRules(t, rs, registration(), newCall(time.Second, dissect.IfaceATSVC, opJobEnum))
	if a := r.alerts(RuleTaskRegistered); len(a) != 1 || a[0].Event.Severity != SeverityCritical {
		t.Errorf("registered: %v", r.ruleIDs())
	}
	if a := r.alerts(RuleTaskRecon); len(a) != 1 || a[0].Event.Severity != 2 {
		t.Errorf("recon: %v", r.ruleIDs())
	}
}

func TestCustomRules(t *testing.T) {
	rs := mustRules(t, `rules:
  - id: veeam_outside_admins
    severity: 8
    mitre: {technique: T1053.002, tactic: TA0003}
    condition: tsch.task.path.startsWith("\\Veeam\\") && !source.ip.in_cidr(["10.9.0.0/16"]) && user.name.iequals("administrator")
  - id: helpers_negative
    condition: in_cidr(source.ip, "10.9.0.0/16") || tsch.task.command.icontains("powershell")
  - id: missing_field_is_no_match
    condition: tsch.run.user == "x" || tsch.job.server_name == "x"
  - id: not_on_recon
    condition: has(tsch.task) && tsch.task.path == "\\Veeam\\Job1" && dcerpc.operation == "SchRpcRegisterTask"
`)
	r, _ := runRules(t, rs, registration(), newCall(time.Second, dissect.IfaceITaskSchedulerService, opRetrieve, overTCP(), task(`\Veeam\Job1`, nil)))
	if ids := r.ruleIDs(); !slices.Equal(ids, []string{RuleTaskRegistered, "veeam_outside_admins", "not_on_recon", RuleTaskRecon, "veeam_outside_admins"}) {
		t.Fatalf("alerts %v", ids)
	}
	a := r.alerts("veeam_outside_admins")[0]
	if a.Event.Severity != 8 || a.Threat.Technique.ID != "T1053.002" || a.Threat.Technique.Name != "Scheduled Task/Job: At" ||
		a.Threat.Tactic.Name != "Persistence" || a.Rule.Ruleset != "custom" || !strings.Contains(a.Event.Reason, "test.yaml:2") {
		t.Errorf("alert %+v %+v %+v", a.Event, a.Threat, a.Rule)
	}
	// A suppression applies to custom alerts too.
	rs = mustRules(t, "suppress:\n  - rule: c1\nrules:\n  - id: c1\n    condition: 'true'\n")
	r, _ = runRules(t, rs, registration())
	if ids := r.ruleIDs(); !slices.Equal(ids, []string{RuleTaskRegistered}) || rs.Suppressions()[0].Count != 1 {
		t.Errorf("alerts %v counts %+v", ids, rs.Suppressions())
	}
}

func TestRulesErrors(t *testing.T) {
	tests := []struct{ body, want string }{
		{"suppress:\n  - rule: atexc\n", "test.yaml:2:11: unknown rule id"},
		{"suppress:\n  - reason: everything\n", "test.yaml:2:5: suppress entry matches every alert"},
		{"suppress:\n  - source: []\n    user: []\n", "test.yaml:2:5: suppress entry matches every alert"},
		{"suppress:\n  - source: [10.0.0.0/40]\n", "test.yaml:2:13: source \"10.0.0.0/40\": not a CIDR"},
		{"suppress:\n  - user: x\n    task_path: '('\n", "test.yaml:3:16: task_path: error parsing regexp"},
		{"suppress:\n  - rule: atexec\n    sorce: [1.2.3.4]\n", "test.yaml:3:5: suppress: unknown key \"sorce\""},
		{"severity:\n  atexec: extreme\n", "test.yaml:2:11: severity \"extreme\""},
		{"severity:\n  nope: low\n", "test.yaml:2:3: unknown rule id \"nope\""},
		{"rules:\n  - id: atexec\n    condition: 'true'\n", "test.yaml:2:9: rule id \"atexec\" is already taken"},
		{"rules:\n  - id: Bad Id\n    condition: 'true'\n", "test.yaml:2:9: rule id \"Bad Id\""},
		{"rules:\n  - id: x\n", "test.yaml:2:5: rule x: no condition"},
		{"rules:\n  - id: x\n    condition: dcrpc.operation == \"a\"\n", "test.yaml:3:16: rule x: condition: undeclared reference to 'dcrpc'"},
		{"rules:\n  - id: x\n    condition: source.ip + \"a\"\n", "test.yaml:3:16: rule x: condition: yields string"},
		{"rules:\n  - id: x\n    condition: a ==\n", "test.yaml:3:"},
		// A misspelt field would never match: refused at load.
		{"rules:\n  - id: x\n    condition: tsch.task.comand == \"a\"\n", "test.yaml:3:25: rule x: condition: the event has no field tsch.task.comand"},
		{"rules:\n  - id: x\n    condition: source.ip.octet == \"a\"\n", "test.yaml:3:25: rule x: condition: source.ip has no fields"},
		{"rules:\n  - id: x\n    mitre: {technique: 1053}\n    condition: 'true'\n", "test.yaml:3:24: mitre technique \"1053\""},
		// File rules: no dcerpc object, no tsch beyond the task.
		{"rules:\n  - id: x\n    on: file\n    condition: dcerpc.operation == \"a\"\n", "test.yaml:4:22: rule x: condition: a file operation has no dcerpc object"},
		{"rules:\n  - id: x\n    on: file\n    condition: tsch.register.flags > 0.0\n", "test.yaml:4:20: rule x: condition: the event has no field tsch.register (tsch holds task)"},
		{"rules:\n  - id: x\n    on: files\n    condition: 'true'\n", "test.yaml:3:9: rule on \"files\""},
		{"supress: []\n", "test.yaml:1:1: unknown key \"supress\""},
		{"- 1\n", "test.yaml:1:1: want a mapping"},
		{"suppress: [\n", "test.yaml:"},
	}
	for _, tt := range tests {
		_, err := ParseRules("test.yaml", []byte(tt.body))
		if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
			t.Errorf("%q:\n got %v\nwant %s...", tt.body, err, tt.want)
		}
	}
	// Fields of embedded objects, lists and comprehension variables pass.
	if _, err := ParseRules("ok.yaml", []byte("rules:\n  - id: x\n    condition: has(tsch.job.job_time) && "+
		"tsch.task.actions.exists(a, a.command == \"x\") && dcerpc.stub_length.request > 0\n")); err != nil {
		t.Errorf("valid fields refused: %v", err)
	}
	if rs, err := ParseRules("empty.yaml", nil); err != nil || len(ListRules(rs)) != len(builtinDefs) {
		t.Errorf("empty file: %v", err)
	}
}

// TestRulesExample loads the example file shipped in docs/.
func TestRulesExample(t *testing.T) {
	rs, err := LoadRules(filepath.Join("..", "docs", "rules.example.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(rs.Suppressions()) != 3 || rs.CustomRules() != 4 || rs.Overrides() != 2 {
		t.Errorf("%d suppressions, %d custom rules, %d overrides", len(rs.Suppressions()), rs.CustomRules(), rs.Overrides())
	}
	// The backup-agent entry hides the agent's own registration; the
	// custom rule sees it come from outside the admin subnets.
	r, _ := runRules(t, rs, registration())
	if ids := r.ruleIDs(); !slices.Equal(ids, []string{"task_from_outside_admin_subnets"}) {
		t.Errorf("alerts %v", ids)
	}
	if c := rs.Suppressions()[2]; c.Count != 1 || c.Reason != "backup agent tasks" {
		t.Errorf("backup agent entry: %+v", c)
	}
	// The flood rule: a summary of 5,000 unanswered calls, not one of 999.
	flood := func(n int) callOpt {
		return func(c *Call) {
			c.Responded = false
			c.Flood = &FloodSummary{Calls: n, Last: c.Time.Add(time.Duration(n) * time.Microsecond), LastCallID: c.CallID + uint32(n), Opnums: []uint16{0}}
		}
	}
	r, _ = runRules(t, rs, newCall(0, dissect.IfaceITaskSchedulerService, 0, overTCP(), flood(5000)),
		newCall(time.Second, dissect.IfaceITaskSchedulerService, 0, overTCP(), flood(999)))
	if a := r.alerts("rpc_request_flood"); len(a) != 1 || a[0].DCERPC == nil || a[0].DCERPC.Flood == nil || a[0].DCERPC.Flood.Calls != 5000 {
		t.Errorf("rpc_request_flood alerts %v", r.ruleIDs())
	}
	// The file rule: a .job that runs cmd.exe, not one that runs an agent.
	r, _ = runRules(t, rs, jobWrite(0, "ADMIN$", `Tasks\a.job`, jobBytes(`C:\Windows\System32\CMD.EXE`, "/c x")),
		jobWrite(time.Second, "ADMIN$", `Tasks\b.job`, jobBytes(`C:\agent\cmd.exe.bak`, "")))
	if a := r.alerts("job_file_runs_shell"); len(a) != 1 || a[0].File.Name != "a.job" {
		t.Errorf("job_file_runs_shell alerts %v", r.ruleIDs())
	}
}

// TestCarrySuppressionCounts: a reloaded file keeps the counts of the
// entries that match what they matched before, wherever they moved and
// however they were spelt, and starts changed and new ones at zero; the
// old ruleset's later increments still land in the shared counter.
func TestCarrySuppressionCounts(t *testing.T) {
	old := mustRules(t, `suppress:
  - rule: [remote_task_registered, atexec]
    source: [10.1.1.0/24, 10.9.0.1]
    reason: jump hosts
  - user: [svc_backup]
    reason: backup
  - task_path: '^\\Backup\\'
    reason: veeam
`)
	for range 3 {
		runRules(t, old, registration())
	}
	if c := counts(old); !slices.Equal(c, []uint64{3, 0, 0}) {
		t.Fatalf("old counts %v", c)
	}
	// Entry 1 moved to the end, its lists reordered and respelt, its
	// reason reworded; entry 2 changed; entry 3 unchanged but now second
	// (and never matched: its count stays 0); a new entry.
	body := `suppress:
  - user: [svc_backup, svc_veeam]
    reason: backup
  - task_path: '^\\Backup\\'
    reason: veeam
  - destination: [10.1.1.200]
    reason: new
  - source: [10.9.0.1/32, 10.1.1.7/24]
    rule: [atexec, remote_task_registered]
    reason: admin subnet and jump host
`
	rs := mustRules(t, body)
	rs.Carry(old)
	if c := counts(rs); !slices.Equal(c, []uint64{0, 0, 0, 3}) {
		t.Errorf("counts after the reload %v, want [0 0 0 3]", c)
	}
	// A record still on the old rules after the swap counts in the carried
	// counter; one on the new rules too.
	runRules(t, old, registration())
	runRules(t, rs, registration())
	if c := counts(rs); !slices.Equal(c, []uint64{0, 0, 0, 5}) {
		t.Errorf("counts after more alerts %v, want [0 0 0 5]", c)
	}
	// Reloading the same file carries everything; a changed one nothing.
	same := mustRules(t, body)
	same.Carry(rs)
	if c := counts(same); !slices.Equal(c, []uint64{0, 0, 0, 5}) {
		t.Errorf("same file reloaded: counts %v", c)
	}
	other := mustRules(t, "suppress:\n  - rule: atexec\n    source: [10.1.1.0/25]\n")
	other.Carry(same)
	if c := counts(other); !slices.Equal(c, []uint64{0}) {
		t.Errorf("changed entry: counts %v", c)
	}
}

func counts(rs *Ruleset) []uint64 {
	var c []uint64
	for _, s := range rs.Suppressions() {
		c = append(c, s.Count)
	}
	return c
}
