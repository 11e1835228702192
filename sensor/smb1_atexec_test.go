package sensor

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/tschsensor/tschsensor/detect"
	"github.com/tschsensor/tschsensor/dissect"
	"github.com/tschsensor/tschsensor/sensor/output"
)

// The captures checked here are made by pcaps/gen/make-captures.sh with
// Debian's impacket over SMB1 (NT LM 0.12): atexec sealed and at level
// CONNECT (RPC in Write AndX / Read AndX, output read back from ADMIN$\Temp
// and deleted), and an AT job whose bind and calls each ride in one
// SMB_COM_TRANSACTION TransactNmPipe. Every expected value comes from the
// capture's facts file, which the generator cross-checked against the lab
// server and tshark.

// smb1Facts is the part of pcaps/<name>.json these tests read.
type smb1Facts struct {
	User, Domain, Password string
	Client                 struct {
		SMBDialect string `json:"smb_dialect"`
	}
	Calls []struct {
		Op, Path, Command, Arguments string
		UserID                       string `json:"user_id"`
		ServerName                   string `json:"server_name"`
		JobTime                      int    `json:"job_time"`
		DaysOfWeek                   int    `json:"days_of_week"`
		Flags                        int
		JobID                        int   `json:"job_id"`
		RequestFrames                []int `json:"request_frames"`
		ResponseFrames               []int `json:"response_frames"`
	}
	TransactNmPipeFrames []struct {
		Frame        int
		Response     bool
		PipeFunction string `json:"pipe_function"`
	} `json:"transact_nmpipe_frames"`
}

// smb1Event is the part of an output event these tests read.
type smb1Event struct {
	Event struct{ Kind, Action, Outcome string }
	Rule  struct{ ID string }
	User  struct{ Name, Domain string }
	SMB   struct {
		Version             int
		Dialect, Pipe, Tree string
	} `json:"smb"`
	DCERPC struct {
		Operation                       string
		Encrypted, Decrypted, Responded bool
		Auth                            struct {
			LevelID int `json:"level_id"`
		}
	} `json:"dcerpc"`
	Tsch struct {
		Task struct {
			Path, Command, Arguments string
			RunAs                    string `json:"run_as"`
		}
		Job struct {
			ServerName string   `json:"server_name"`
			JobTimeMS  int      `json:"job_time_ms"`
			DaysOfWeek []string `json:"days_of_week"`
			Flags      int
			JobID      int `json:"job_id"`
			MinJobID   int `json:"min_job_id"`
			MaxJobID   int `json:"max_job_id"`
		}
		ReturnName string `json:"return_name"`
	}
	File struct {
		Path, Share string
		BytesRead   int `json:"bytes_read"`
		Deleted     bool
	}
	Atexec struct {
		OutputRead     bool   `json:"output_read"`
		OutputFile     string `json:"output_file"`
		TaskDeleted    bool   `json:"task_deleted"`
		Polled, Sealed bool
	}
	Pcap struct{ Frames []int }
}

func readSMB1Facts(t *testing.T, name string) *smb1Facts {
	t.Helper()
	b, err := os.ReadFile("../pcaps/" + name + ".json")
	if err != nil {
		t.Fatal(err)
	}
	var f smb1Facts
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatalf("%s.json: %v", name, err)
	}
	if f.Client.SMBDialect != "NT LM 0.12" || len(f.Calls) == 0 || f.Password == "" {
		t.Fatalf("%s.json: dialect %q, %d calls: not an SMB1 capture's facts", name, f.Client.SMBDialect, len(f.Calls))
	}
	return &f
}

// replaySMB1 replays one capture through the whole pipeline (worker,
// detector, JSON output) and fails on replay errors and on anomalies other
// than those named.
func replaySMB1(t *testing.T, name string, creds *dissect.Credentials, allowed ...string) (events, alerts []smb1Event) {
	t.Helper()
	var buf bytes.Buffer
	out := output.NewOutput(output.NewWriterSink(&buf, false))
	res := Replay(context.Background(), ReplayConfig{Options: Options{Credentials: creds},
		Detect: detect.Options{Observer: "test"}, Output: out}, []string{"../pcaps/" + name + ".pcap"})
	if err := out.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, err := range res.Errors {
		t.Errorf("replay: %v", err)
	}
	for a, n := range res.Stats.Anomalies {
		if !slices.Contains(allowed, a) {
			t.Errorf("anomaly %s (%d)", a, n)
		}
	}
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		if l == "" {
			continue
		}
		var ev smb1Event
		if err := json.Unmarshal([]byte(l), &ev); err != nil {
			t.Fatalf("%v: %s", err, l)
		}
		if ev.SMB.Version != 1 || ev.SMB.Dialect != "NT LM 0.12" || ev.SMB.Pipe != "atsvc" {
			t.Errorf("%s %s: smb version %d dialect %q pipe %q, want SMB1 NT LM 0.12 on atsvc",
				ev.Event.Kind, ev.Event.Action, ev.SMB.Version, ev.SMB.Dialect, ev.SMB.Pipe)
		}
		if ev.Event.Kind == "alert" {
			alerts = append(alerts, ev)
		} else {
			events = append(events, ev)
		}
	}
	return events, alerts
}

func smb1Creds(t *testing.T, f *smb1Facts, password string) *dissect.Credentials {
	t.Helper()
	c, err := dissect.ParseCredentials([]byte(f.Domain + `\` + f.User + ":" + password))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// checkCalls matches the call events one to one with the facts' calls: same
// operation, answered, in the frames tshark found, with outcome success
// when the stubs were readable (else the return code is unknown).
func checkCalls(t *testing.T, f *smb1Facts, events []smb1Event, readable bool) {
	t.Helper()
	if len(events) != len(f.Calls) {
		t.Fatalf("%d call events, facts have %d calls", len(events), len(f.Calls))
	}
	for i, ev := range events {
		c := f.Calls[i]
		if ev.Event.Action != c.Op || ev.DCERPC.Operation != c.Op {
			t.Errorf("event %d is %s/%s, want %s", i, ev.Event.Action, ev.DCERPC.Operation, c.Op)
		}
		outcome := "success"
		if !readable {
			outcome = "unknown"
		}
		if !ev.DCERPC.Responded || ev.Event.Outcome != outcome {
			t.Errorf("%s: responded %v outcome %q, want answered, %s", c.Op, ev.DCERPC.Responded, ev.Event.Outcome, outcome)
		}
		if want := slices.Concat(c.RequestFrames, c.ResponseFrames); !slices.Equal(ev.Pcap.Frames, want) {
			t.Errorf("%s: frames %v, want %v", c.Op, ev.Pcap.Frames, want)
		}
		if ev.User.Name != f.User || ev.User.Domain != f.Domain {
			t.Errorf("%s: user %s\\%s, want %s\\%s", c.Op, ev.User.Domain, ev.User.Name, f.Domain, f.User)
		}
	}
}

func alertIDs(alerts []smb1Event) []string {
	var ids []string
	for _, a := range alerts {
		ids = append(ids, a.Rule.ID)
	}
	slices.Sort(ids)
	return ids
}

func alertByID(alerts []smb1Event, id string) *smb1Event {
	for i := range alerts {
		if alerts[i].Rule.ID == id {
			return &alerts[i]
		}
	}
	return nil
}

// checkAtexec checks the four atexec calls and both alerts; decoded says
// whether the task's contents must be visible.
func checkAtexec(t *testing.T, f *smb1Facts, events, alerts []smb1Event, sealed, decoded bool) {
	t.Helper()
	checkCalls(t, f, events, decoded)
	reg := f.Calls[0]
	if reg.Op != "SchRpcRegisterTask" || reg.Command == "" || !strings.HasPrefix(reg.Path, `\`) {
		t.Fatalf("facts: first call %+v is not atexec's registration", reg)
	}
	for _, ev := range events {
		if ev.DCERPC.Encrypted != sealed {
			t.Errorf("%s: encrypted %v, want %v", ev.Event.Action, ev.DCERPC.Encrypted, sealed)
		}
		if ev.DCERPC.Decrypted != (sealed && decoded) {
			t.Errorf("%s: decrypted %v, want %v", ev.Event.Action, ev.DCERPC.Decrypted, sealed && decoded)
		}
		want := ""
		if decoded {
			want = reg.Path
		}
		if ev.Tsch.Task.Path != want {
			t.Errorf("%s: task path %q, want %q", ev.Event.Action, ev.Tsch.Task.Path, want)
		}
	}
	task := events[0].Tsch.Task
	if decoded {
		if task.Command != reg.Command || task.Arguments != reg.Arguments || task.RunAs != reg.UserID {
			t.Errorf("task %q %q run as %q, want %q %q %q", task.Command, task.Arguments, task.RunAs, reg.Command, reg.Arguments, reg.UserID)
		}
	} else if task.Command != "" || task.Arguments != "" {
		t.Errorf("sealed without credentials, yet command %q arguments %q", task.Command, task.Arguments)
	}
	if got := alertIDs(alerts); !slices.Equal(got, []string{"atexec", "remote_task_registered"}) {
		t.Fatalf("alerts %v, want atexec and remote_task_registered", got)
	}
	a := alertByID(alerts, "atexec")
	out := `Temp` + reg.Path + ".tmp" // atexec's output file is named after its task
	// atexec.sealed says the match was made without the stubs' contents.
	if !a.Atexec.OutputRead || a.Atexec.OutputFile != out || !a.Atexec.TaskDeleted || !a.Atexec.Polled || a.Atexec.Sealed != !decoded {
		t.Errorf("atexec alert %+v, want output %s read, task deleted, polled, sealed %v", a.Atexec, out, !decoded)
	}
	if a.File.Share != "ADMIN$" || a.File.Path != out || a.File.BytesRead == 0 || !a.File.Deleted {
		t.Errorf("atexec alert file %+v, want ADMIN$ %s read and deleted", a.File, out)
	}
	if r := alertByID(alerts, "remote_task_registered"); decoded && r.Tsch.Task.Command != reg.Command {
		t.Errorf("remote_task_registered alert command %q, want %q", r.Tsch.Task.Command, reg.Command)
	}
}

// TestSMB1AtexecSealed: atexec's default packet privacy over SMB1. Without
// credentials the four calls are named but sealed and the atexec pattern
// is still caught from operations and the ADMIN$\Temp read; with the lab
// password every stub opens; a wrong password opens none.
func TestSMB1AtexecSealed(t *testing.T) {
	const name = "impacket-atexec-smb1"
	f := readSMB1Facts(t, name)
	t.Run("no credentials", func(t *testing.T) {
		events, alerts := replaySMB1(t, name, nil)
		checkAtexec(t, f, events, alerts, true, false)
	})
	t.Run("password", func(t *testing.T) {
		events, alerts := replaySMB1(t, name, smb1Creds(t, f, f.Password))
		checkAtexec(t, f, events, alerts, true, true)
	})
	t.Run("wrong password", func(t *testing.T) {
		events, alerts := replaySMB1(t, name, smb1Creds(t, f, f.Password+"x"), "ntlm_wrong_credentials")
		checkAtexec(t, f, events, alerts, true, false)
	})
}

// TestSMB1AtexecClear: the same flow at auth level CONNECT; the task is
// readable with or without credentials.
func TestSMB1AtexecClear(t *testing.T) {
	const name = "impacket-atexec-smb1-clear"
	f := readSMB1Facts(t, name)
	for _, creds := range []*dissect.Credentials{nil, smb1Creds(t, f, f.Password)} {
		events, alerts := replaySMB1(t, name, creds)
		checkAtexec(t, f, events, alerts, false, true)
		for _, ev := range events {
			if ev.DCERPC.Auth.LevelID != 2 {
				t.Errorf("%s: auth level %d, want 2 (connect)", ev.Event.Action, ev.DCERPC.Auth.LevelID)
			}
		}
	}
}

// TestSMB1AtTransactNmPipe: NetrJobAdd and NetrJobDel whose PDUs each ride
// in one SMB_COM_TRANSACTION TransactNmPipe (request data in, response
// data out), never in Write/Read AndX.
func TestSMB1AtTransactNmPipe(t *testing.T) {
	const name = "impacket-at-smb1-trans"
	f := readSMB1Facts(t, name)
	var transReq, transResp []int
	for _, x := range f.TransactNmPipeFrames {
		if x.PipeFunction != "0x0026" {
			t.Fatalf("facts: frame %d has pipe function %s", x.Frame, x.PipeFunction)
		}
		if x.Response {
			transResp = append(transResp, x.Frame)
		} else {
			transReq = append(transReq, x.Frame)
		}
	}
	if len(f.Calls) != 2 || f.Calls[0].Op != "NetrJobAdd" || f.Calls[1].Op != "NetrJobDel" {
		t.Fatalf("facts: calls %+v, want NetrJobAdd then NetrJobDel", f.Calls)
	}
	for _, c := range f.Calls {
		for _, fr := range c.RequestFrames {
			if !slices.Contains(transReq, fr) {
				t.Fatalf("facts: %s request frame %d is not a TransactNmPipe request %v", c.Op, fr, transReq)
			}
		}
		for _, fr := range c.ResponseFrames {
			if !slices.Contains(transResp, fr) {
				t.Fatalf("facts: %s response frame %d is not a TransactNmPipe response %v", c.Op, fr, transResp)
			}
		}
	}
	add := f.Calls[0]
	days := []string{"Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"}
	var wantDays []string
	for i, d := range days {
		if add.DaysOfWeek&(1<<i) != 0 {
			wantDays = append(wantDays, d)
		}
	}
	for _, creds := range []*dissect.Credentials{nil, smb1Creds(t, f, f.Password)} {
		events, alerts := replaySMB1(t, name, creds)
		checkCalls(t, f, events, true)
		job := events[0].Tsch.Job
		if events[0].Tsch.Task.Command != add.Command || job.ServerName != add.ServerName || job.JobTimeMS != add.JobTime ||
			job.Flags != add.Flags || job.JobID != add.JobID || !slices.Equal(job.DaysOfWeek, wantDays) {
			t.Errorf("NetrJobAdd %q %+v, want %q server %q time %d flags %d job %d days %v", events[0].Tsch.Task.Command,
				job, add.Command, add.ServerName, add.JobTime, add.Flags, add.JobID, wantDays)
		}
		if del := events[1].Tsch.Job; del.MinJobID != add.JobID || del.MaxJobID != add.JobID {
			t.Errorf("NetrJobDel %d..%d, want job %d", del.MinJobID, del.MaxJobID, add.JobID)
		}
		if got := alertIDs(alerts); !slices.Equal(got, []string{"remote_at_job_created", "remote_task_deleted"}) {
			t.Errorf("alerts %v, want remote_at_job_created and remote_task_deleted", got)
		}
		if a := alertByID(alerts, "remote_at_job_created"); a != nil && a.Tsch.Task.Command != add.Command {
			t.Errorf("AT job alert command %q, want %q", a.Tsch.Task.Command, add.Command)
		}
	}
}
