package main

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tschsensor/tschsensor/detect"
)

// atexecClear is the project's Impacket atexec capture (client 10.77.0.1,
// server 10.77.0.2): one remote_task_registered and one atexec alert.
var atexecClear = filepath.Join("..", "..", "pcaps", "impacket-atexec-smb2-clear.pcap")

func writeRules(t *testing.T, body string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(f, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

// replayLines runs replay and returns stdout's lines and stderr.
func replayLines(t *testing.T, args ...string) ([]string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	if rc := run(append([]string{"replay", "--observer", "test"}, args...), &out, &errb); rc != 0 {
		t.Fatalf("replay %v: rc %d: %s", args, rc, errb.String())
	}
	return strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n"), errb.String()
}

func alertIDs(t *testing.T, lines []string) []string {
	t.Helper()
	var ids []string
	for _, l := range lines {
		var e struct {
			Event struct{ Kind string }
			Rule  struct{ ID string }
		}
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatalf("%v: %s", err, l)
		}
		if e.Event.Kind == "alert" {
			ids = append(ids, e.Rule.ID)
		}
	}
	return ids
}

// TestRulesSuppressAtExec: suppressing atexec for the capture's client
// subnet removes the atexec alert and nothing else, and counts one
// suppression; the same entry for another subnet (the 10.1.1.0/24)
// changes nothing, byte for byte.
func TestRulesSuppressAtExec(t *testing.T) {
	plain, _ := replayLines(t, atexecClear)
	if ids := alertIDs(t, plain); !slices.Equal(ids, []string{"remote_task_registered", "atexec"}) {
		t.Fatalf("without rules: alerts %v", ids)
	}
	rules := writeRules(t, "suppress:\n  - rule: atexec\n    source: [10.77.0.0/24]\n    reason: lab admin subnet\n")
	statsFile := filepath.Join(t.TempDir(), "stats.json")
	got, stderr := replayLines(t, "--rules", rules, "--stats-file", statsFile, atexecClear)
	want := slices.DeleteFunc(slices.Clone(plain), func(l string) bool { return strings.Contains(l, `"rule":{"id":"atexec"`) })
	if len(want) != len(plain)-1 || !slices.Equal(got, want) {
		t.Errorf("suppressed output is not the plain output less the atexec alert:\n%s", strings.Join(got, "\n"))
	}
	if !strings.Contains(stderr, `entry 1 (line 2, "lab admin subnet"): 1`) {
		t.Errorf("summary does not count one suppression:\n%s", stderr)
	}
	var counters struct {
		Output struct {
			Alerts     int
			Suppressed []detect.SuppressionCount
		}
	}
	b, err := os.ReadFile(statsFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &counters); err != nil {
		t.Fatal(err)
	}
	if s := counters.Output.Suppressed; counters.Output.Alerts != 1 || len(s) != 1 || s[0].Count != 1 || s[0].Reason != "lab admin subnet" ||
		!slices.Equal(s[0].Rules, []string{"atexec"}) {
		t.Errorf("stats file output %+v", counters.Output)
	}

	other := writeRules(t, "suppress:\n  - rule: atexec\n    source: [10.1.1.0/24]\n")
	got, stderr = replayLines(t, "--rules", other, atexecClear)
	if !slices.Equal(got, plain) {
		t.Error("an entry for another subnet changed the output")
	}
	if !strings.Contains(stderr, `entry 1 (line 2, ""): 0`) {
		t.Errorf("summary:\n%s", stderr)
	}
}

// TestRulesCustomWhoami: the custom rule raises an alert with its
// id, related to the registration event, mapped like a built-in one; a
// condition that does not hold raises nothing.
func TestRulesCustomWhoami(t *testing.T) {
	rules := writeRules(t, `rules:
  - id: whoami_task
    name: Task running whoami
    severity: high
    mitre: {technique: T1053.005, tactic: TA0002}
    tags: [discovery]
    condition: dcerpc.operation == "SchRpcRegisterTask" && tsch.task.arguments.contains("whoami")
  - id: never
    condition: dcerpc.operation == "SchRpcRegisterTask" && tsch.task.arguments.contains("mimikatz")
`)
	lines, _ := replayLines(t, "--rules", rules, atexecClear)
	if ids := alertIDs(t, lines); !slices.Equal(ids, []string{"remote_task_registered", "whoami_task", "atexec"}) {
		t.Fatalf("alerts %v", ids)
	}
	var reg, alert detect.Event
	for _, l := range lines {
		if strings.Contains(l, `"action":"SchRpcRegisterTask"`) && strings.Contains(l, `"kind":"event"`) {
			json.Unmarshal([]byte(l), &reg)
		}
		if strings.Contains(l, `"id":"whoami_task"`) {
			json.Unmarshal([]byte(l), &alert)
		}
	}
	if alert.Event.Severity != detect.SeverityHigh || alert.Threat == nil || alert.Threat.Technique.ID != "T1053.005" ||
		alert.Threat.Tactic.Name != "Execution" || !slices.Equal(alert.Tags, []string{"discovery"}) {
		t.Errorf("alert %+v %+v tags %v", alert.Event, alert.Threat, alert.Tags)
	}
	if reg.Event.ID == "" || alert.Related == nil || !slices.Equal(alert.Related.Events, []string{reg.Event.ID}) {
		t.Errorf("custom alert not related to the registration event %q: %+v", reg.Event.ID, alert.Related)
	}
}

// TestRulesCheck: a broken condition makes `rules check` exit 1 naming the
// file, line and column; a good file exits 0; list shows built-in and
// custom rules.
func TestRulesCheck(t *testing.T) {
	bad := writeRules(t, "rules:\n  - id: broken\n    name: x\n    condition: dcerpc.operation == \"SchRpcRegisterTask\" &&\n")
	var out, errb bytes.Buffer
	if rc := run([]string{"rules", "check", bad}, &out, &errb); rc != 1 {
		t.Fatalf("rc %d, want 1", rc)
	}
	if !strings.HasPrefix(errb.String(), bad+":4:") || !strings.Contains(errb.String(), "rule broken: condition:") {
		t.Errorf("error does not name line 4: %s", errb.String())
	}
	out.Reset()
	errb.Reset()
	example := filepath.Join("..", "..", "docs", "rules.example.yaml")
	if rc := run([]string{"rules", "check", example}, &out, &errb); rc != 0 {
		t.Fatalf("example: rc %d: %s", rc, errb.String())
	}
	out.Reset()
	if rc := run([]string{"rules", "list", "--rules", example}, &out, &errb); rc != 0 {
		t.Fatalf("list: rc %d: %s", rc, errb.String())
	}
	for _, id := range []string{"remote_task_registered", "atexec", "remote_task_recon", "task_runs_recon_command"} {
		if !strings.Contains(out.String(), id) {
			t.Errorf("list lacks %s:\n%s", id, out.String())
		}
	}
	// The example's override shows in the list: remote_task_enabled medium.
	if !regexpLine(out.String(), `remote_task_enabled\s+5\s+T1053.005`) {
		t.Errorf("override not listed:\n%s", out.String())
	}
	// replay refuses a broken file before reading packets.
	if rc := run([]string{"replay", "--rules", bad, atexecClear}, io.Discard, &errb); rc != 2 {
		t.Errorf("replay with a broken rules file: rc %d, want 2", rc)
	}
}

// TestReloadRules: a reload swaps the rules in; a file that no longer loads
// leaves the previous rules in force.
func TestReloadRules(t *testing.T) {
	f := writeRules(t, "severity:\n  atexec: low\n")
	var holder atomic.Pointer[detect.Ruleset]
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if !reloadRules(f, &holder, log) || holder.Load() == nil {
		t.Fatal("first load failed")
	}
	first := holder.Load()
	os.WriteFile(f, []byte("severity:\n  atexec: bogus\n"), 0o644)
	if reloadRules(f, &holder, log) || holder.Load() != first {
		t.Error("a broken file replaced the rules in force")
	}
	os.WriteFile(f, []byte("suppress:\n  - rule: atexec\n"), 0o644)
	if !reloadRules(f, &holder, log) || holder.Load() == first || len(holder.Load().Suppressions()) != 1 {
		t.Error("a good file was not swapped in")
	}
	if reloadRules("", &holder, log) || holder.Load() == nil {
		t.Error("a reload without --rules changed the rules")
	}
}

// TestSIGHUPReloads: with the watcher installed, a SIGHUP to the process
// swaps the rules in (and does not end the test binary, as the default
// action would).
func TestSIGHUPReloads(t *testing.T) {
	f := writeRules(t, "severity:\n  atexec: low\n")
	var holder atomic.Pointer[detect.Ruleset]
	stop := make(chan struct{})
	defer close(stop)
	watchSIGHUP(f, &holder, slog.New(slog.NewTextHandler(io.Discard, nil)), stop)
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	// The reload happens on the watcher's goroutine: wait for it, bounded
	// by the test's own deadline rather than a timed assertion.
	for holder.Load() == nil {
		time.Sleep(time.Millisecond)
	}
	if got := holder.Load().Overrides(); got != 1 {
		t.Errorf("%d overrides after SIGHUP", got)
	}
}

func regexpLine(text, pattern string) bool {
	return regexp.MustCompile(`(?m)^` + pattern).MatchString(text)
}

// TestRulesSharedAtExec runs the checks on the reference atexec
// capture, whose client is in 10.1.1.0/24 (A_hangchuanin__atexec.pcapng in
// ../shared): the subnet suppression removes exactly the atexec alert and
// counts one, and the whoami custom rule fires.
func TestRulesSharedAtExec(t *testing.T) {
	pcap := filepath.Join("..", "..", "..", "shared", "pcaps", "A_hangchuanin__atexec.pcapng")
	if _, err := os.Stat(pcap); err != nil {
		t.Skipf("reference captures not found (../shared beside the checkout): %v", err)
	}
	plain, _ := replayLines(t, pcap)
	if ids := alertIDs(t, plain); !slices.Contains(ids, "atexec") {
		t.Fatalf("without rules: alerts %v", ids)
	}
	rules := writeRules(t, `suppress:
  - rule: atexec
    source: [10.1.1.0/24]
    reason: admin subnet
rules:
  - id: whoami_task
    condition: dcerpc.operation == "SchRpcRegisterTask" && tsch.task.arguments.contains("whoami")
`)
	got, stderr := replayLines(t, "--rules", rules, pcap)
	var want []string
	for _, l := range plain {
		if strings.Contains(l, `"rule":{"id":"atexec"`) {
			continue
		}
		want = append(want, l)
		// Custom rules run after the built-in ones on the same call.
		if strings.Contains(l, `"rule":{"id":"remote_task_registered"`) {
			want = append(want, "whoami_task")
		}
	}
	var gotIDs []string
	for _, l := range got {
		if strings.Contains(l, `"rule":{"id":"whoami_task"`) {
			gotIDs = append(gotIDs, "whoami_task")
			continue
		}
		gotIDs = append(gotIDs, l)
	}
	if !slices.Equal(gotIDs, want) {
		t.Errorf("output is not the plain output less atexec plus whoami_task after the registration alert:\n%s", strings.Join(got, "\n"))
	}
	if !strings.Contains(stderr, `"admin subnet"): 1`) {
		t.Errorf("summary does not count one suppression:\n%s", stderr)
	}
}
