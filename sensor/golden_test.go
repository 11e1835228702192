package sensor

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tschsensor/tschsensor/dissect"
)

var update = flag.Bool("update", false, "rewrite the golden event files in pcaps/")

// replayLines replays files and returns the JSON lines.
func replayLines(t *testing.T, opt Options, files ...string) []string {
	t.Helper()
	lines, _ := replayCounters(t, opt, files...)
	return lines
}

// TestGolden replays every capture the project made (pcaps/*.pcap) and
// compares the events field by field with pcaps/<name>.jsonl. Run with
// -update to rewrite them, then review the diff like code.
func TestGolden(t *testing.T) {
	files, _ := filepath.Glob("../pcaps/*.pcap")
	if len(files) == 0 {
		t.Fatal("no captures in pcaps/")
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".pcap")
		t.Run(name, func(t *testing.T) {
			got := replayLines(t, Options{}, f)
			golden := strings.TrimSuffix(f, ".pcap") + ".jsonl"
			if *update {
				data := ""
				if len(got) > 0 {
					data = strings.Join(got, "\n") + "\n"
				}
				if err := os.WriteFile(golden, []byte(data), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			b, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./sensor -run TestGolden -update)", err)
			}
			var want []string
			if g := strings.TrimSpace(string(b)); g != "" {
				want = strings.Split(g, "\n")
			}
			if len(got) != len(want) {
				t.Errorf("%d events, golden has %d", len(got), len(want))
			}
			for i := 0; i < min(len(got), len(want)); i++ {
				diffJSON(t, i, want[i], got[i])
			}
		})
	}
}

// diffJSON reports every differing leaf field between two JSON lines.
func diffJSON(t *testing.T, line int, want, got string) {
	t.Helper()
	var w, g any
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("golden line %d: %v", line, err)
	}
	if err := json.Unmarshal([]byte(got), &g); err != nil {
		t.Fatalf("output line %d: %v", line, err)
	}
	var walk func(path string, a, b any)
	walk = func(path string, a, b any) {
		am, aok := a.(map[string]any)
		bm, bok := b.(map[string]any)
		if aok && bok {
			for k := range am {
				walk(path+"."+k, am[k], bm[k])
			}
			for k := range bm {
				if _, ok := am[k]; !ok {
					t.Errorf("line %d: %s%s: unexpected field", line, path, "."+k)
				}
			}
			return
		}
		aj, _ := json.Marshal(a)
		bj, _ := json.Marshal(b)
		if !bytes.Equal(aj, bj) {
			t.Errorf("line %d: %s: want %s, got %s", line, path, aj, bj)
		}
	}
	walk("", w, g)
}

// TestGoldenCredentials checks that the sealed atexec capture opens with the
// lab's password: the registration shows its command line.
func TestGoldenCredentials(t *testing.T) {
	var facts struct {
		User, Domain, Password string
		Calls                  []struct {
			Op, Command, Arguments, Path string
		}
	}
	b, err := os.ReadFile("../pcaps/impacket-atexec-smb2.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &facts); err != nil {
		t.Fatal(err)
	}
	if facts.Password == "" || len(facts.Calls) == 0 || facts.Calls[0].Op != "SchRpcRegisterTask" {
		t.Fatal("facts file lacks the password or the registration")
	}
	reg := facts.Calls[0]
	creds, err := dissect.ParseCredentials([]byte(facts.Domain + `\` + facts.User + ":" + facts.Password))
	if err != nil {
		t.Fatal(err)
	}
	lines := replayLines(t, Options{Credentials: creds}, "../pcaps/impacket-atexec-smb2.pcap")
	var found bool
	for _, l := range lines {
		var ev struct {
			Event  struct{ Kind, Action string }
			DCERPC struct {
				Encrypted, Decrypted bool
			} `json:"dcerpc"`
			Tsch struct {
				Task struct{ Path, Command, Arguments string }
			}
		}
		if err := json.Unmarshal([]byte(l), &ev); err != nil {
			t.Fatal(err)
		}
		if ev.Event.Kind != "event" || ev.Event.Action != "SchRpcRegisterTask" {
			continue
		}
		found = true
		if !ev.DCERPC.Encrypted || !ev.DCERPC.Decrypted {
			t.Errorf("encrypted=%v decrypted=%v, want both true", ev.DCERPC.Encrypted, ev.DCERPC.Decrypted)
		}
		if ev.Tsch.Task.Command != reg.Command || ev.Tsch.Task.Arguments != reg.Arguments || ev.Tsch.Task.Path != reg.Path {
			t.Errorf("task %q %q %q, want %q %q %q", ev.Tsch.Task.Path, ev.Tsch.Task.Command, ev.Tsch.Task.Arguments, reg.Path, reg.Command, reg.Arguments)
		}
	}
	if !found {
		t.Fatal("no SchRpcRegisterTask event")
	}
}
