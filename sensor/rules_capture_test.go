package sensor

import (
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"
)

// TestNewRuleCaptures replays the captures made for the hijack, log-evasion
// and legacy-task rules (pcaps/gen/make-captures.sh scenarios hijack and
// log-evasion, make-gomsrpc-captures.sh gosmb2-legacy-job, make-captures.sh legacy-job-smb1) and checks each raises its alert, once, on the call the facts
// name, and nothing the scenario does not hold.
func TestNewRuleCaptures(t *testing.T) {
	for _, tc := range []struct {
		name, rule string
		alerts     []string
		onCall     int // index of the facts call the alert is built on
	}{
		{"impacket-hijack-smb2", "task_hijack",
			[]string{"remote_task_recon", "remote_task_registered", "remote_task_registered", "task_hijack"}, 3},
		{"impacket-log-evasion-smb2", "task_log_evasion",
			[]string{"remote_task_registered", "task_log_evasion"}, 0},
		// go-smb2 writes ADMIN$\Tasks\TschLabLegacy.job, go-msrpc sets its
		// account: one legacy_task_created with the job's command.
		{"gosmb2-legacy-job", "legacy_task_created",
			[]string{"task_file_written_smb", "remote_task_account_set", "legacy_task_created"}, 0},
		// The same over SMB1: impacket writes ADMIN$\Tasks\TschLabLegacy1.job
		// with WRITE_ANDX, then sets its account on \pipe\atsvc.
		{"impacket-legacy-job-smb1", "legacy_task_created",
			[]string{"task_file_written_smb", "remote_task_account_set", "legacy_task_created"}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := os.ReadFile("../pcaps/" + tc.name + ".json")
			if err != nil {
				t.Fatal(err)
			}
			var facts struct {
				Calls []struct {
					Op            string
					Path          string
					JobName       string   `json:"job_name"`
					RequestFrames []uint64 `json:"request_frames"`
				}
				Client struct{ Command, Arguments string }
			}
			if err := json.Unmarshal(b, &facts); err != nil {
				t.Fatal(err)
			}
			var ids []string
			var hit map[string]any
			for _, l := range replayLines(t, Options{}, "../pcaps/"+tc.name+".pcap") {
				var ev map[string]any
				if err := json.Unmarshal([]byte(l), &ev); err != nil {
					t.Fatal(err)
				}
				if ev["event"].(map[string]any)["kind"] != "alert" {
					continue
				}
				id := ev["rule"].(map[string]any)["id"].(string)
				ids = append(ids, id)
				if id == tc.rule {
					hit = ev
				}
			}
			if !slices.Equal(ids, tc.alerts) {
				t.Fatalf("alerts %v, want %v", ids, tc.alerts)
			}
			call := facts.Calls[tc.onCall]
			if call.Path == "" {
				call.Path = call.JobName
			}
			task := hit["tsch"].(map[string]any)["task"].(map[string]any)
			if task["command"] != facts.Client.Command || task["arguments"] != facts.Client.Arguments {
				t.Errorf("alert's task runs %v %v, the client sent %q %q", task["command"], task["arguments"],
					facts.Client.Command, facts.Client.Arguments)
			}
			frames := hit["pcap"].(map[string]any)["frames"].([]any)
			if hit["dcerpc"].(map[string]any)["operation"] != call.Op || uint64(frames[0].(float64)) != call.RequestFrames[0] ||
				!strings.EqualFold(task["path"].(string), call.Path) {
				t.Errorf("%s not on %s of %s (frame %d): %v", tc.rule, call.Op, call.Path, call.RequestFrames[0], hit["pcap"])
			}
		})
	}
}
