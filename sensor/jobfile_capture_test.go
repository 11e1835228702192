package sensor

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tschsensor/tschsensor/detect"
	"github.com/tschsensor/tschsensor/sensor/output"
)

// TestMalformedJobFile: the SMB1 legacy-job capture with its .job file's
// version field changed on the wire (the lab job file carries the marker
// "tschsensor-smb1j" in its UUID, two bytes after the version) counts one
// smb_job_file_malformed, and legacy_task_created still fires, saying the
// file was not readable and why. The capture as made counts none.
func TestMalformedJobFile(t *testing.T) {
	orig, err := os.ReadFile("../pcaps/impacket-legacy-job-smb1.pcap")
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(orig, []byte("tschsensor-smb1j"))
	if i < 4 || bytes.Count(orig, []byte("tschsensor-smb1j")) != 1 || orig[i-2] != 1 {
		t.Fatal("the .job file's UUID marker is not once in the capture, after file version 1")
	}
	bad := bytes.Clone(orig)
	bad[i-2] = 2 // file version 2: not a job file the Task Scheduler reads
	badPath := filepath.Join(t.TempDir(), "bad-job.pcap")
	if err := os.WriteFile(badPath, bad, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, path string
		anomalies  uint64
		reason     string
	}{
		{"as made", "../pcaps/impacket-legacy-job-smb1.pcap", 0, "runs C:\\Windows\\System32\\cmd.exe /c net user labsvc1"},
		{"file version changed", badPath, 1, "job file not readable: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			out := output.NewOutput(output.NewWriterSink(&buf, false))
			res := Replay(context.Background(), ReplayConfig{Detect: detect.Options{Observer: "test"}, Output: out}, []string{tc.path})
			if err := out.Close(context.Background()); err != nil {
				t.Fatal(err)
			}
			if len(res.Errors) > 0 {
				t.Fatal(res.Errors)
			}
			if got := res.Stats.Anomalies["smb_job_file_malformed"]; got != tc.anomalies {
				t.Errorf("smb_job_file_malformed %d, want %d", got, tc.anomalies)
			}
			var reasons []string
			for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
				var ev struct {
					Event struct{ Reason string }
					Rule  struct{ ID string }
				}
				if err := json.Unmarshal([]byte(l), &ev); err != nil {
					t.Fatal(err)
				}
				if ev.Rule.ID == "legacy_task_created" {
					reasons = append(reasons, ev.Event.Reason)
				}
			}
			if len(reasons) != 1 || !strings.Contains(reasons[0], tc.reason) {
				t.Errorf("legacy_task_created reasons %q, want one with %q", reasons, tc.reason)
			}
		})
	}
}
