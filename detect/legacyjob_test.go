package detect

import (
	"encoding/binary"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf16"

	"github.com/tschsensor/tschsensor/dissect"
)

// jobBytes is a minimal .job file (MS-TSCH 2.4) running app with params.
func jobBytes(app, params string) []byte {
	le := binary.LittleEndian
	b := make([]byte, 68)
	le.PutUint16(b[2:], 1)
	le.PutUint16(b[20:], 70)
	b = le.AppendUint16(b, 0)
	for _, s := range []string{app, params, "", "", ""} {
		u := utf16.Encode([]rune(s + "\x00"))
		b = le.AppendUint16(b, uint16(len(u)))
		for _, c := range u {
			b = le.AppendUint16(b, c)
		}
	}
	return le.AppendUint16(le.AppendUint16(le.AppendUint16(b, 0), 0), 0)
}

func setAccount(at time.Duration, job string) *Call {
	return newCall(at, dissect.IfaceSASec, opSetAccount, func(c *Call) {
		ok := uint32(0)
		c.Tsch = &dissect.TschInfo{Operation: "SASetAccountInformation", ReturnCode: &ok,
			Account: &dissect.AccountInfo{JobName: job, AccountName: `LAB\alice`}, Task: &dissect.TaskInfo{Path: job, RunAs: `LAB\alice`}}
	})
}

func jobWrite(at time.Duration, share, path string, data []byte) *FileOp {
	f := fileOp(at, share, path, "write", uint64(len(data)))
	f.Data = data
	return f
}

func TestRuleLegacyTask(t *testing.T) {
	data := jobBytes(`C:\Windows\System32\cmd.exe`, `/c whoami`)
	t.Run("file then account", func(t *testing.T) {
		r := run(t, jobWrite(0, "ADMIN$", `Tasks\TschLab.job`, data), setAccount(time.Second, "TschLab.job"))
		a := r.alerts(RuleLegacyTask)
		if len(a) != 1 {
			t.Fatalf("alerts %v", r.ruleIDs())
		}
		task := a[0].Tsch.(*dissect.TschInfo).Task
		if task.Command != `C:\Windows\System32\cmd.exe` || task.Arguments != "/c whoami" || task.RunAs != `LAB\alice` ||
			a[0].File == nil || a[0].File.Name != "TschLab.job" || !strings.Contains(a[0].Event.Reason, "runs C:") {
			t.Errorf("alert task %+v file %+v reason %q", task, a[0].File, a[0].Event.Reason)
		}
		// The call's own event is untouched by the alert's copy.
		if ev := r.evs[1]; ev.Tsch.(*dissect.TschInfo).Task.Command != "" {
			t.Error("the alert wrote into the call's event")
		}
		if !slices.Equal(r.ruleIDs(), []string{RuleTaskFile, RuleAccountSet, RuleLegacyTask}) {
			t.Errorf("alerts %v", r.ruleIDs())
		}
	})
	t.Run("account then file, contents not visible", func(t *testing.T) {
		r := run(t, setAccount(0, "x.job"), jobWrite(time.Second, "C$", `Windows\Tasks\X.JOB`, nil))
		a := r.alerts(RuleLegacyTask)
		if len(a) != 1 || !strings.Contains(a[0].Event.Reason, "not visible") {
			t.Fatalf("alerts %v", r.ruleIDs())
		}
	})
	t.Run("contents not a job file", func(t *testing.T) {
		bad := slices.Clone(data)
		bad[2] = 2 // file version
		r := run(t, jobWrite(0, "ADMIN$", `Tasks\a.job`, bad), setAccount(time.Second, "a.job"))
		a := r.alerts(RuleLegacyTask)
		if len(a) != 1 {
			t.Fatalf("alerts %v", r.ruleIDs())
		}
		if why := a[0].Event.Reason; !strings.Contains(why, "job file not readable: ") || !strings.Contains(why, "file version 2") {
			t.Errorf("reason %q", why)
		}
	})
	negatives := []struct {
		name  string
		steps []any
	}{
		{"other job name", []any{jobWrite(0, "ADMIN$", `Tasks\a.job`, data), setAccount(time.Second, "b.job")}},
		{"job outside the Tasks folder", []any{jobWrite(0, "ADMIN$", `Temp\a.job`, data), setAccount(time.Second, "a.job")}},
		{"not a .job", []any{jobWrite(0, "ADMIN$", `Tasks\a.txt`, data), setAccount(time.Second, "a.txt")}},
		{"outside the window", []any{jobWrite(0, "ADMIN$", `Tasks\a.job`, data), setAccount(DefaultAtExecWindow+time.Second, "a.job")}},
		{"file read, not written", []any{fileOp(0, "ADMIN$", `Tasks\a.job`, "read", 10), setAccount(time.Second, "a.job")}},
		{"account alone", []any{setAccount(0, "a.job")}},
		{"file alone", []any{jobWrite(0, "ADMIN$", `Tasks\a.job`, data)}},
	}
	for _, n := range negatives {
		t.Run("negative: "+n.name, func(t *testing.T) {
			if r := run(t, n.steps...); len(r.alerts(RuleLegacyTask)) != 0 {
				t.Errorf("alerts %v", r.ruleIDs())
			}
		})
	}
	t.Run("other client", func(t *testing.T) {
		f := jobWrite(0, "ADMIN$", `Tasks\a.job`, data)
		f.Client = f.Server
		if r := run(t, f, setAccount(time.Second, "a.job")); len(r.alerts(RuleLegacyTask)) != 0 {
			t.Errorf("alerts %v", r.ruleIDs())
		}
	})
}
