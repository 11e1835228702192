package sensor

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/tschsensor/tschsensor/dissect"
)

// gomsrpcFacts is the part of pcaps/gomsrpc-*.json (facts.py) the test uses:
// what go-msrpc's client sent and what the lab server decoded.
type gomsrpcFacts struct {
	User, Domain, Password string
	Client                 struct {
		AuthLevel      int    `json:"auth_level"`
		TransferSyntax string `json:"transfer_syntax"`
		TaskPath       string `json:"task_path"`
		Command        string
		Arguments      string
		RunAs          string `json:"run_as"`
	}
	Calls []gomsrpcCall
}

// gomsrpcCall is one call the lab server decoded, with its frames.
type gomsrpcCall struct {
	Op            string
	Path          string
	Command       string
	Arguments     string
	UserID        string `json:"user_id"`
	RequestFrames []int  `json:"request_frames"`
}

// gomsrpcEvent is the part of a sensor event the test checks.
type gomsrpcEvent struct {
	Event  struct{ Kind, Action string }
	DCERPC struct {
		Encrypted, Decrypted bool
		TransferSyntax       string `json:"transfer_syntax"`
		Auth                 struct {
			LevelID int `json:"level_id"`
		}
	} `json:"dcerpc"`
	Tsch struct {
		Task struct {
			Path, Command, Arguments string
			RunAs                    string `json:"run_as"`
		}
	}
	Pcap struct{ Frames []int }
}

// TestGoMsrpcCaptures replays the captures made with go-msrpc's own
// ITaskSchedulerService client (pcaps/gen/make-gomsrpc-captures.sh) with the
// lab account's password and checks that the registration the sensor reports
// is exactly what the client sent and the server decoded. Without the
// password the sealed captures must not show the command.
func TestGoMsrpcCaptures(t *testing.T) {
	files, _ := filepath.Glob("../pcaps/gomsrpc-*.json")
	if len(files) < 2 {
		t.Fatalf("want at least the tcp and np sealed go-msrpc captures, found %d facts files", len(files))
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".json")
		t.Run(name, func(t *testing.T) {
			var facts gomsrpcFacts
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(b, &facts); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			i := slices.IndexFunc(facts.Calls, func(c gomsrpcCall) bool { return c.Op == "SchRpcRegisterTask" })
			if i < 0 || facts.Password == "" || facts.Client.Command == "" {
				t.Fatal("facts file lacks the registration, the password or the client's command")
			}
			reg := facts.Calls[i]
			// The client's intent and the server's decoding must agree before
			// either is used as the expected value.
			if reg.Path != facts.Client.TaskPath || reg.Command != facts.Client.Command ||
				reg.Arguments != facts.Client.Arguments || reg.UserID != facts.Client.RunAs {
				t.Fatalf("facts disagree: server %q %q %q %q, client %q %q %q %q", reg.Path, reg.Command,
					reg.Arguments, reg.UserID, facts.Client.TaskPath, facts.Client.Command, facts.Client.Arguments,
					facts.Client.RunAs)
			}
			sealed := facts.Client.AuthLevel == 6
			pcap := "../pcaps/" + name + ".pcap"

			creds, err := dissect.ParseCredentials([]byte(facts.Domain + `\` + facts.User + ":" + facts.Password))
			if err != nil {
				t.Fatal(err)
			}
			ev := gomsrpcRegister(t, replayLines(t, Options{Credentials: creds}, pcap))
			task := ev.Tsch.Task
			if task.Command != reg.Command || task.Arguments != reg.Arguments || task.RunAs != reg.UserID || task.Path != reg.Path {
				t.Errorf("task path %q command %q arguments %q run_as %q, want %q %q %q %q",
					task.Path, task.Command, task.Arguments, task.RunAs, reg.Path, reg.Command, reg.Arguments, reg.UserID)
			}
			if ev.DCERPC.Encrypted != sealed || ev.DCERPC.Decrypted != sealed {
				t.Errorf("encrypted=%v decrypted=%v, want both %v", ev.DCERPC.Encrypted, ev.DCERPC.Decrypted, sealed)
			}
			if ev.DCERPC.Auth.LevelID != facts.Client.AuthLevel {
				t.Errorf("auth level %d, want %d", ev.DCERPC.Auth.LevelID, facts.Client.AuthLevel)
			}
			if ev.DCERPC.TransferSyntax != facts.Client.TransferSyntax {
				t.Errorf("transfer syntax %q, want %q", ev.DCERPC.TransferSyntax, facts.Client.TransferSyntax)
			}
			if len(reg.RequestFrames) == 0 || !slices.Contains(ev.Pcap.Frames, reg.RequestFrames[len(reg.RequestFrames)-1]) {
				t.Errorf("frames %v do not hold the request's last frame %v", ev.Pcap.Frames, reg.RequestFrames)
			}

			if !sealed {
				return
			}
			// Without credentials: the operation is known, its contents are not.
			ev = gomsrpcRegister(t, replayLines(t, Options{}, pcap))
			if !ev.DCERPC.Encrypted || ev.DCERPC.Decrypted {
				t.Errorf("without credentials: encrypted=%v decrypted=%v, want true false", ev.DCERPC.Encrypted, ev.DCERPC.Decrypted)
			}
			if ev.Tsch.Task.Command != "" || ev.Tsch.Task.Arguments != "" {
				t.Errorf("without credentials the task shows %q %q", ev.Tsch.Task.Command, ev.Tsch.Task.Arguments)
			}
		})
	}
}

// gomsrpcRegister returns the one SchRpcRegisterTask event of a replay.
func gomsrpcRegister(t *testing.T, lines []string) gomsrpcEvent {
	t.Helper()
	var found []gomsrpcEvent
	for _, l := range lines {
		var ev gomsrpcEvent
		if err := json.Unmarshal([]byte(l), &ev); err != nil {
			t.Fatal(err)
		}
		if ev.Event.Kind == "event" && ev.Event.Action == "SchRpcRegisterTask" {
			found = append(found, ev)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d SchRpcRegisterTask events, want 1", len(found))
	}
	return found[0]
}
