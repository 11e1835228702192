package detect

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tschsensor/tschsensor/dissect"
)

// TestCustomFileRules: `on: file` rules see SMB file operations (with a
// .job file's task), never calls; call rules never see file operations;
// the alert has task_file_written_smb's shape, and suppressions apply.
func TestCustomFileRules(t *testing.T) {
	rs := mustRules(t, `rules:
  - id: job_runs_shell
    on: file
    severity: high
    condition: >-
      event.action == "write" && file.name.lowerAscii().endsWith(".job") &&
      tsch.task.command.icontains("cmd.exe") && smb.tree.endsWith("ADMIN$")
  - id: temp_file_deleted
    on: file
    condition: event.action == "delete" && file.directory == "Temp" && file.deleted
  - id: any_call
    condition: source.ip == "10.1.1.2"
`)
	job := jobWrite(0, "ADMIN$", `Tasks\TschLab.job`, jobBytes(`C:\Windows\System32\cmd.exe`, `/c whoami`))
	steps := []any{
		job,
		jobWrite(time.Second, "ADMIN$", `Tasks\other.job`, jobBytes(`C:\agent.exe`, ``)), // not a shell
		jobWrite(2*time.Second, "ADMIN$", `Tasks\unread.job`, nil),                       // contents not seen
		fileOp(3*time.Second, "ADMIN$", `Temp\x.tmp`, "delete", 0),
		fileOp(4*time.Second, "ADMIN$", `Temp\y.tmp`, "read", 10),
		registration(),
	}
	r, _ := runRules(t, rs, steps...)
	var ids []string
	for _, id := range r.ruleIDs() {
		if !strings.HasPrefix(id, "remote_task_") && id != RuleTaskFile {
			ids = append(ids, id)
		}
	}
	if !slices.Equal(ids, []string{"job_runs_shell", "temp_file_deleted", "any_call"}) {
		t.Fatalf("custom alerts %v (all %v)", ids, r.ruleIDs())
	}
	a := r.alerts("job_runs_shell")[0]
	task := a.Tsch.(*dissect.TschInfo).Task
	if a.Event.Severity != SeverityHigh || a.Rule.Ruleset != "custom" || a.Event.Action != "write" ||
		a.File == nil || a.File.Path != `Tasks\TschLab.job` || task.Command != `C:\Windows\System32\cmd.exe` ||
		task.Arguments != "/c whoami" || !strings.Contains(a.Event.Reason, "test.yaml:2") ||
		a.Event.ID == r.alerts(RuleTaskFile)[0].Event.ID || a.Threat.Technique.ID != "T1053.005" {
		t.Errorf("alert %+v file %+v task %+v", a.Event, a.File, task)
	}
	// A call rule is not run on file operations, a file rule not on calls:
	// any_call fired once, for the registration.
	if n := len(r.alerts("any_call")); n != 1 {
		t.Errorf("any_call fired %d times", n)
	}

	// Suppressions: a custom file alert by command, the built-in
	// task_file_written_smb by source and file path.
	rs = mustRules(t, `suppress:
  - rule: job_runs_shell
    command: whoami
  - rule: task_file_written_smb
    source: [10.1.1.0/24]
    task_path: '(?i)^tasks\\tschlab\.job$'
rules:
  - id: job_runs_shell
    on: file
    condition: tsch.task.command.icontains("cmd.exe")
`)
	r, _ = runRules(t, rs, steps...)
	if len(r.alerts("job_runs_shell")) != 0 {
		t.Errorf("job_runs_shell not suppressed: %v", r.ruleIDs())
	}
	files := r.alerts(RuleTaskFile)
	if len(files) != 2 || files[0].File.Path != `Tasks\other.job` || files[1].File.Path != `Tasks\unread.job` {
		t.Errorf("task_file_written_smb alerts %d (only TschLab.job suppressed)", len(files))
	}
	if c := counts(rs); !slices.Equal(c, []uint64{1, 1}) {
		t.Errorf("suppression counts %v, want [1 1]", c)
	}
}
