package detect

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tschsensor/tschsensor/dissect"
)

// The records below are shaped after A_hangchuanin__atexec.pcapng (Impacket
// atexec over SMB 2.1, task \nTMgxVrV) and atexec-sealed-dev.pcap (the same
// with packet privacy): what sensor/rpc.go and sensor/smb.go hand over.

var (
	t0  = time.Date(2023, 4, 28, 4, 22, 11, 477023000, time.UTC)
	lab = Endpoints{Client: netip.MustParseAddr("10.1.1.2"), Server: netip.MustParseAddr("10.1.1.130"),
		ClientPort: 1777, ServerPort: 445}
)

// recorder collects what a Detector emits.
type recorder struct{ evs []*Event }

func (r *recorder) emit(e *Event) { r.evs = append(r.evs, e) }

func (r *recorder) alerts(rule string) []*Event {
	var out []*Event
	for _, e := range r.evs {
		if e.Event.Kind == "alert" && e.Rule != nil && e.Rule.ID == rule {
			out = append(out, e)
		}
	}
	return out
}

func (r *recorder) ruleIDs() []string {
	var ids []string
	for _, e := range r.evs {
		if e.Event.Kind == "alert" {
			ids = append(ids, e.Rule.ID)
		}
	}
	return ids
}

type callOpt func(*Call)

var seq uint64

func newCall(at time.Duration, iface dissect.Iface, opnum uint16, opts ...callOpt) *Call {
	seq++
	c := &Call{
		Time: t0.Add(at), ResponseTime: t0.Add(at + 10*time.Millisecond), Endpoints: lab,
		Transport: TransportNamedPipe, Iface: iface, IfaceUUID: iface.UUID(), IfaceVersion: "1.0",
		Opnum: opnum, CallID: uint32(seq), Syntax: dissect.SyntaxNDR, Responded: true,
		SMB:      &SMBContext{Version: 2, Dialect: "2.1", SessionID: 0x4000c000025, Tree: `\\10.1.1.130\IPC$`, Pipe: "atsvc"},
		User:     &Identity{User: "administrator", Mechanism: "NTLMSSP", From: "rpc_bind"},
		PcapFile: "test.pcap", Seq: seq,
	}
	for _, o := range opts {
		o(c)
	}
	return c
}

func onPipe(p string) callOpt { return func(c *Call) { c.SMB.Pipe = p } }

func overTCP() callOpt {
	return func(c *Call) {
		c.Transport, c.SMB, c.ServerPort = TransportTCP, nil, 49671
	}
}

func sealed() callOpt {
	return func(c *Call) { c.Encrypted, c.HasAuth, c.AuthType, c.AuthLevel = true, true, 10, 6 }
}

func task(path string, t *dissect.TaskInfo) callOpt {
	return func(c *Call) {
		if t == nil {
			t = &dissect.TaskInfo{}
		}
		t.Path = path
		ok := uint32(0)
		c.Tsch = &dissect.TschInfo{Operation: dissect.OpName(c.Iface, c.Opnum), Task: t, ReturnCode: &ok}
		if c.Opnum == 1 && c.Iface == dissect.IfaceITaskSchedulerService {
			c.Tsch.Register = &dissect.RegisterInfo{Flags: 2}
		}
	}
}

const (
	opRegister   = 1
	opRetrieve   = 2
	opRun        = 12
	opDelete     = 13
	opLastRun    = 16
	opJobAdd     = 0
	opJobEnum    = 2
	opSetAccount = 0
	opGetAccount = 3
)

func fileOp(at time.Duration, share, path, op string, n uint64) *FileOp {
	seq++
	return &FileOp{Time: t0.Add(at), Endpoints: lab, Op: op, Path: path, Share: share, Bytes: n,
		SMB:  SMBContext{Version: 2, Dialect: "2.1", SessionID: 0x4000c000025, Tree: `\\10.1.1.130\` + share},
		User: &Identity{User: "administrator", Mechanism: "NTLMSSP", From: "smb_session"}, PcapFile: "test.pcap", Seq: seq}
}

func run(t *testing.T, steps ...any) *recorder {
	t.Helper()
	r := &recorder{}
	d := New(Options{Observer: "test"}, r.emit)
	for _, s := range steps {
		switch s := s.(type) {
		case *Call:
			d.Call(s)
		case *FileOp:
			d.File(s)
		default:
			t.Fatalf("bad step %T", s)
		}
	}
	d.Flush()
	return r
}

func hidden() *bool { b := true; return &b }

func TestRuleTaskRegistered(t *testing.T) {
	tests := []struct {
		name     string
		task     *dissect.TaskInfo
		path     string
		severity int
		why      []string
	}{
		{"plain", &dissect.TaskInfo{Command: `C:\Program Files\Backup\backup.exe`, RunAs: "CORP\\svc-backup"},
			`\Corp\NightlyBackup`, SeverityMedium, nil},
		{"hidden", &dissect.TaskInfo{Command: `C:\Program Files\Backup\backup.exe`, Hidden: hidden()},
			`\Corp\NightlyBackup`, SeverityHigh, []string{"hidden task"}},
		{"SYSTEM", &dissect.TaskInfo{Command: `C:\Program Files\Backup\backup.exe`, RunAs: "S-1-5-18"},
			`\Corp\NightlyBackup`, SeverityHigh, []string{"runs as SYSTEM"}},
		{"LOLBin", &dissect.TaskInfo{Command: `C:\Windows\System32\rundll32.exe`, Arguments: "x.dll,Start"},
			`\Corp\NightlyBackup`, SeverityHigh, []string{"shell or LOLBin: rundll32.exe"}},
		// The atexec task: three reasons and more make it critical.
		{"atexec", &dissect.TaskInfo{Command: "cmd.exe", Arguments: `/C whoami > %windir%\Temp\nTMgxVrV.tmp 2>&1`,
			RunAs: "S-1-5-18", Hidden: hidden(), RunLevel: "HighestAvailable"}, `\nTMgxVrV`, SeverityCritical,
			[]string{"hidden task", "runs as SYSTEM", "highest run level", "shell or LOLBin: cmd.exe",
				"output redirected into Windows\\Temp", "random-looking 8-letter name at the root"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := run(t, newCall(0, dissect.IfaceITaskSchedulerService, opRegister, overTCP(), task(tt.path, tt.task)))
			a := r.alerts(RuleTaskRegistered)
			if len(a) != 1 || len(r.evs) != 2 {
				t.Fatalf("alerts %v of %d records", r.ruleIDs(), len(r.evs))
			}
			if a[0].Event.Severity != tt.severity {
				t.Errorf("severity %d, want %d", a[0].Event.Severity, tt.severity)
			}
			if got := a[0].Event.Reason; got != strings.Join(tt.why, "; ") {
				t.Errorf("reason %q\nwant   %q", got, strings.Join(tt.why, "; "))
			}
			if a[0].Threat.Technique.ID != "T1053.005" || a[0].Event.Type[0] != "creation" {
				t.Errorf("technique %s type %v", a[0].Threat.Technique.ID, a[0].Event.Type)
			}
			if ev := r.evs[0]; ev.Event.Kind != "event" || !slices.Equal(a[0].Related.Events, []string{ev.Event.ID}) {
				t.Errorf("alert not related to its call event: %v", a[0].Related.Events)
			}
		})
	}
	t.Run("negative: retrieving a task is recon, not registration", func(t *testing.T) {
		r := run(t, newCall(0, dissect.IfaceITaskSchedulerService, opRetrieve, overTCP(), task(`\nTMgxVrV`, nil)))
		if ids := r.ruleIDs(); !slices.Equal(ids, []string{RuleTaskRecon}) {
			t.Errorf("alerts %v, want only %s", ids, RuleTaskRecon)
		}
	})
	t.Run("sealed registration still alerts", func(t *testing.T) {
		c := newCall(0, dissect.IfaceITaskSchedulerService, opRegister, overTCP(), sealed())
		r := run(t, c)
		a := r.alerts(RuleTaskRegistered)
		if len(a) != 1 || a[0].Event.Severity != SeverityMedium || !a[0].DCERPC.Encrypted {
			t.Fatalf("alerts %v", r.ruleIDs())
		}
	})
}

func TestRuleAtJobCreated(t *testing.T) {
	// A_suricata-verify__dcerpc-smb-ctxid.pcap: refused by the server, still an attempt.
	fail := uint32(50)
	c := newCall(0, dissect.IfaceATSVC, opJobAdd, func(c *Call) {
		c.Tsch = &dissect.TschInfo{Operation: "NetrJobAdd", Task: &dissect.TaskInfo{Command: `"cmd /c whoami.exe > c:\windows\temp\at.txt"`},
			ReturnCode: &fail}
	})
	r := run(t, c)
	a := r.alerts(RuleAtJobCreated)
	if len(a) != 1 || len(r.evs) != 2 {
		t.Fatalf("alerts %v", r.ruleIDs())
	}
	if a[0].Threat.Technique.ID != "T1053.002" || a[0].Event.Severity != SeverityHigh {
		t.Errorf("technique %s severity %d", a[0].Threat.Technique.ID, a[0].Event.Severity)
	}
	r = run(t, newCall(0, dissect.IfaceATSVC, opJobEnum))
	if ids := r.ruleIDs(); !slices.Equal(ids, []string{RuleTaskRecon}) {
		t.Errorf("NetrJobEnum: alerts %v, want only %s", ids, RuleTaskRecon)
	}
}

func TestRuleAccountSet(t *testing.T) {
	r := run(t, newCall(0, dissect.IfaceSASec, opSetAccount))
	if a := r.alerts(RuleAccountSet); len(a) != 1 || a[0].Threat.Tactic.ID != "TA0003" {
		t.Fatalf("alerts %v", r.ruleIDs())
	}
	r = run(t, newCall(0, dissect.IfaceSASec, opGetAccount))
	if ids := r.ruleIDs(); len(ids) != 0 {
		t.Errorf("SAGetAccountInformation raised %v", ids)
	}
}

// atexecClear is A_hangchuanin__atexec.pcapng as records.
func atexecClear(outputName string) []any {
	name := `\nTMgxVrV`
	return []any{
		newCall(0, dissect.IfaceITaskSchedulerService, opRegister, task(name, &dissect.TaskInfo{Command: "cmd.exe",
			Arguments: `/C whoami > %windir%\Temp\nTMgxVrV.tmp 2>&1`, RunAs: "S-1-5-18", Hidden: hidden()})),
		newCall(14*time.Millisecond, dissect.IfaceITaskSchedulerService, opRun, task(name, nil)),
		newCall(18*time.Millisecond, dissect.IfaceITaskSchedulerService, opLastRun, task(name, nil)),
		newCall(24*time.Millisecond, dissect.IfaceITaskSchedulerService, opDelete, task(name, nil)),
		fileOp(86*time.Millisecond, "ADMIN$", `Temp\`+outputName, "read", 21),
	}
}

func TestRuleAtExecClear(t *testing.T) {
	r := run(t, atexecClear("nTMgxVrV.tmp")...)
	a := r.alerts(RuleAtExec)
	if len(a) != 1 {
		t.Fatalf("alerts %v", r.ruleIDs())
	}
	x := a[0].AtExec
	want := AtExecFields{OutputRead: true, OutputFile: `Temp\nTMgxVrV.tmp`, TaskDeleted: true, Polled: true}
	if x == nil || *x != want {
		t.Fatalf("atexec %+v, want %+v", x, want)
	}
	if a[0].File == nil || a[0].File.Share != "ADMIN$" || a[0].File.Name != "nTMgxVrV.tmp" || a[0].File.BytesRead != 21 {
		t.Errorf("file %+v", a[0].File)
	}
	if a[0].Event.Severity != SeverityCritical || a[0].Threat.Tactic.ID != "TA0008" {
		t.Errorf("severity %d tactic %s", a[0].Event.Severity, a[0].Threat.Tactic.ID)
	}
	// The alert relates the four calls, in order.
	var calls []string
	for _, e := range r.evs {
		if e.Event.Kind == "event" {
			calls = append(calls, e.Event.ID)
		}
	}
	if !slices.Equal(a[0].Related.Events, calls) {
		t.Errorf("related %v, want %v", a[0].Related.Events, calls)
	}
	if !strings.Contains(a[0].Event.Reason, `output file Temp\nTMgxVrV.tmp read back`) {
		t.Errorf("reason %q", a[0].Event.Reason)
	}

	// Over C$ the same output file is Windows\Temp\<name>.tmp.
	steps := atexecClear("")
	steps[4] = fileOp(86*time.Millisecond, "C$", `Windows\Temp\nTMgxVrV.tmp`, "read", 21)
	if a := run(t, steps...).alerts(RuleAtExec); len(a) != 1 || !a[0].AtExec.OutputRead {
		t.Errorf("C$ output read not matched: %v", a)
	}
}

func TestRuleAtExecSealed(t *testing.T) {
	// atexec-sealed-dev.pcap without the password: operations only.
	steps := []any{
		newCall(0, dissect.IfaceITaskSchedulerService, opRegister, sealed()),
		newCall(20*time.Millisecond, dissect.IfaceITaskSchedulerService, opRun, sealed()),
		newCall(30*time.Millisecond, dissect.IfaceITaskSchedulerService, opLastRun, sealed()),
		newCall(40*time.Millisecond, dissect.IfaceITaskSchedulerService, opDelete, sealed()),
	}
	r := run(t, steps...)
	a := r.alerts(RuleAtExec)
	if len(a) != 1 {
		t.Fatalf("alerts %v", r.ruleIDs())
	}
	want := AtExecFields{TaskDeleted: true, Polled: true, Sealed: true}
	if *a[0].AtExec != want {
		t.Errorf("atexec %+v, want %+v", *a[0].AtExec, want)
	}
	if !strings.Contains(a[0].Event.Reason, "stubs sealed") {
		t.Errorf("reason %q", a[0].Event.Reason)
	}
	// The task name is not visible: any Temp\*.tmp read after the run counts.
	steps = append(steps, fileOp(90*time.Millisecond, "ADMIN$", `Temp\aBcDeFgH.tmp`, "read", 10))
	r = run(t, steps...)
	if a := r.alerts(RuleAtExec); len(a) != 1 || !a[0].AtExec.OutputRead || a[0].AtExec.OutputFile != `Temp\aBcDeFgH.tmp` {
		t.Errorf("sealed chain with output: %+v", a)
	}
}

func TestRuleAtExecNegatives(t *testing.T) {
	t.Run("wmiexec output read without any task", func(t *testing.T) {
		// B_hangchuanin__wmiexec.pcapng: ADMIN$\__1683291962.56 read back, no task RPC.
		r := run(t, fileOp(0, "ADMIN$", `__1683291962.56`, "read", 120), fileOp(time.Second, "ADMIN$", `Temp\x.tmp`, "read", 12))
		if len(r.evs) != 0 {
			t.Errorf("records %v", r.ruleIDs())
		}
	})
	t.Run("ADMIN$ read of another .tmp when the name is known", func(t *testing.T) {
		steps := atexecClear("OtherName.tmp")
		steps = slices.Delete(steps, 3, 4) // no SchRpcDelete: only the output read could complete the chain
		r := run(t, steps...)
		if a := r.alerts(RuleAtExec); len(a) != 0 {
			t.Errorf("atexec raised on an unrelated file: %+v", a[0].AtExec)
		}
		if ids := r.ruleIDs(); !slices.Equal(ids, []string{RuleTaskRegistered}) {
			t.Errorf("alerts %v", ids)
		}
	})
	t.Run("chain outside the five-minute window", func(t *testing.T) {
		name := `\nTMgxVrV`
		r := run(t,
			newCall(0, dissect.IfaceITaskSchedulerService, opRegister, task(name, nil)),
			newCall(time.Minute, dissect.IfaceITaskSchedulerService, opRun, task(name, nil)),
			newCall(DefaultAtExecWindow+time.Second, dissect.IfaceITaskSchedulerService, opDelete, task(name, nil)),
			fileOp(DefaultAtExecWindow+2*time.Second, "ADMIN$", `Temp\nTMgxVrV.tmp`, "read", 21))
		if a := r.alerts(RuleAtExec); len(a) != 0 {
			t.Errorf("atexec across %v: %+v", DefaultAtExecWindow, a[0].AtExec)
		}
		// The late delete stands alone.
		if len(r.alerts(RuleTaskDeleted)) != 1 {
			t.Errorf("alerts %v", r.ruleIDs())
		}
	})
	t.Run("registered then deleted, never run", func(t *testing.T) {
		steps := atexecClear("nTMgxVrV.tmp")
		steps = slices.Delete(steps, 1, 2) // no SchRpcRun
		r := run(t, steps...)
		if a := r.alerts(RuleAtExec); len(a) != 0 {
			t.Errorf("atexec raised for a task never run: %+v", a[0].AtExec)
		}
	})
	t.Run("registered and run, neither deleted nor read back", func(t *testing.T) {
		steps := atexecClear("nTMgxVrV.tmp")
		steps = slices.Delete(steps, 3, 5)
		if a := run(t, steps...).alerts(RuleAtExec); len(a) != 0 {
			t.Errorf("atexec raised without delete or output: %+v", a[0].AtExec)
		}
	})
	t.Run("run and delete without a registration", func(t *testing.T) {
		steps := atexecClear("nTMgxVrV.tmp")[1:]
		r := run(t, steps...)
		if ids := r.ruleIDs(); !slices.Equal(ids, []string{RuleTaskRun, RuleTaskDeleted}) {
			t.Errorf("alerts %v, want run and delete only", ids)
		}
	})
	t.Run("registration over another pipe", func(t *testing.T) {
		steps := atexecClear("nTMgxVrV.tmp")
		for _, s := range steps {
			if c, ok := s.(*Call); ok {
				onPipe(`\pipe\browser`)(c)
			}
		}
		if a := run(t, steps...).alerts(RuleAtExec); len(a) != 0 {
			t.Error("atexec raised without \\pipe\\atsvc")
		}
	})
}

func TestRuleTaskFile(t *testing.T) {
	tests := []struct {
		share, path string
		severity    int
	}{
		{"ADMIN$", `Tasks\evil.job`, SeverityMedium},
		{"C$", `Windows\System32\Tasks\Updater`, SeverityLow},
		{"ADMIN$", `system32\tasks\Microsoft\Windows\x`, SeverityLow},
	}
	for _, tt := range tests {
		r := run(t, fileOp(0, tt.share, tt.path, "write", 3000))
		if ids := r.ruleIDs(); !slices.Equal(ids, []string{RuleTaskFile}) || len(r.evs) != 1 {
			t.Fatalf("%s %s: records %v", tt.share, tt.path, ids)
		}
		a := r.evs[0]
		if a.Event.Severity != tt.severity || a.File == nil || a.File.Share != tt.share || a.DCERPC != nil {
			t.Errorf("%s %s: severity %d file %+v", tt.share, tt.path, a.Event.Severity, a.File)
		}
	}
	// Reading the Tasks folder, or writing elsewhere, is nothing.
	r := run(t, fileOp(0, "ADMIN$", `Tasks\evil.job`, "read", 3000), fileOp(0, "C$", `Users\Public\Tasks\x`, "write", 1))
	if len(r.evs) != 0 {
		t.Errorf("records %v", r.ruleIDs())
	}
}

// TestDetectorDeterministic runs one mixed input twice: the JSON must be
// byte for byte the same (event ids, order of alerts closed at Flush).
func TestDetectorDeterministic(t *testing.T) {
	build := func() []any {
		seq = 0
		other := Endpoints{Client: netip.MustParseAddr("10.1.1.9"), Server: netip.MustParseAddr("10.1.1.130"), ClientPort: 50000, ServerPort: 445}
		steps := atexecClear("nTMgxVrV.tmp")
		for i := 0; i < 4; i++ {
			c := steps[i].(*Call)
			cc := *c
			cc.Endpoints = other
			cc.Seq += 100
			steps = append(steps, &cc)
		}
		steps = append(steps, newCall(time.Second, dissect.IfaceATSVC, opJobAdd), fileOp(2*time.Second, "ADMIN$", `Tasks\a.job`, "write", 1))
		return steps
	}
	encode := func(r *recorder) []byte {
		var b bytes.Buffer
		for _, e := range r.evs {
			j, err := json.Marshal(e)
			if err != nil {
				t.Fatal(err)
			}
			b.Write(j)
			b.WriteByte('\n')
		}
		return b.Bytes()
	}
	a, b := encode(run(t, build()...)), encode(run(t, build()...))
	if !bytes.Equal(a, b) {
		t.Fatal("two runs of the same input differ")
	}
	if n := bytes.Count(a, []byte(`"rule":{"id":"atexec"`)); n != 2 {
		t.Errorf("%d atexec alerts, want 2 (one per client)", n)
	}
}

// TestRuleAtExecOutputNamedByAction: a clone whose output file is not named
// after the task is linked through the action's own redirection, and a file
// of another name is not.
func TestRuleAtExecOutputNamedByAction(t *testing.T) {
	name := `\Updater`
	steps := func(file string) []any {
		return []any{
			newCall(0, dissect.IfaceITaskSchedulerService, opRegister, task(name, &dissect.TaskInfo{Command: "cmd.exe",
				Arguments: `/C ipconfig >> C:\Windows\Temp\out_9f3a.txt 2>&1`})),
			newCall(10*time.Millisecond, dissect.IfaceITaskSchedulerService, opRun, task(name, nil)),
			newCall(20*time.Millisecond, dissect.IfaceITaskSchedulerService, opDelete, task(name, nil)),
			fileOp(80*time.Millisecond, "ADMIN$", `Temp\`+file, "read", 40),
		}
	}
	a := run(t, steps("out_9f3a.txt")...).alerts(RuleAtExec)
	if len(a) != 1 || !a[0].AtExec.OutputRead || a[0].AtExec.OutputFile != `Temp\out_9f3a.txt` {
		t.Fatalf("named output not linked: %+v", a)
	}
	a = run(t, steps("Updater.tmp")...).alerts(RuleAtExec)
	if len(a) != 1 || a[0].AtExec.OutputRead {
		t.Fatalf("a file the action does not name was linked: %+v", a)
	}
}

// TestAtExecAlertOnCompletion: the alert comes with the step that
// completes the chain (the output file deleted after it was read), not at
// the end of the input; a partial chain comes when the window has passed
// on the detector's clock, which Advance moves without records (issue 16).
func TestAtExecAlertOnCompletion(t *testing.T) {
	r := &recorder{}
	d := New(Options{Observer: "test"}, r.emit)
	steps := atexecClear("nTMgxVrV.tmp")
	steps = append(steps, fileOp(90*time.Millisecond, "ADMIN$", `Temp\nTMgxVrV.tmp`, "delete", 0))
	for i, s := range steps {
		switch s := s.(type) {
		case *Call:
			d.Call(s)
		case *FileOp:
			d.File(s)
		}
		if n := len(r.alerts(RuleAtExec)); (i == len(steps)-1) != (n == 1) || n > 1 {
			t.Fatalf("after step %d of %d: %d atexec alerts", i+1, len(steps), n)
		}
	}
	if a := r.alerts(RuleAtExec)[0]; !a.AtExec.OutputRead || !a.AtExec.TaskDeleted || !strings.Contains(a.Event.Reason, "output file deleted") {
		t.Errorf("alert %+v %q", a.AtExec, a.Event.Reason)
	}
	// A late repeat of a step raises nothing of its own.
	d.Call(newCall(95*time.Millisecond, dissect.IfaceITaskSchedulerService, opDelete, task(`\nTMgxVrV`, nil)))
	d.Flush()
	if ids := r.ruleIDs(); len(r.alerts(RuleAtExec)) != 1 || slices.Contains(ids, RuleTaskDeleted) {
		t.Errorf("after completion and flush: %v", ids)
	}

	// Sealed: no output is known to come; without output read the chain
	// stays open until its window ends on the clock.
	r = &recorder{}
	d = New(Options{Observer: "test", AtExecWindow: time.Minute}, r.emit)
	for _, c := range []*Call{
		newCall(0, dissect.IfaceITaskSchedulerService, opRegister, sealed()),
		newCall(20*time.Millisecond, dissect.IfaceITaskSchedulerService, opRun, sealed()),
		newCall(40*time.Millisecond, dissect.IfaceITaskSchedulerService, opDelete, sealed()),
	} {
		d.Call(c)
	}
	d.Advance(t0.Add(59 * time.Second))
	if n := len(r.alerts(RuleAtExec)); n != 0 {
		t.Fatalf("partial chain raised before its window ended: %d", n)
	}
	d.Advance(t0.Add(62 * time.Second))
	if n := len(r.alerts(RuleAtExec)); n != 1 {
		t.Fatalf("partial chain not raised once its window ended: %d alerts", n)
	}
	d.Flush()
	if n := len(r.alerts(RuleAtExec)); n != 1 {
		t.Fatalf("flush raised the chain again: %d alerts", n)
	}

	// Visible action without output redirection: deletion completes it.
	r = &recorder{}
	d = New(Options{Observer: "test"}, r.emit)
	for _, c := range []*Call{
		newCall(0, dissect.IfaceITaskSchedulerService, opRegister, task(`\quiet`, &dissect.TaskInfo{Command: "calc.exe"})),
		newCall(20*time.Millisecond, dissect.IfaceITaskSchedulerService, opRun, task(`\quiet`, nil)),
		newCall(40*time.Millisecond, dissect.IfaceITaskSchedulerService, opDelete, task(`\quiet`, nil)),
	} {
		d.Call(c)
	}
	if n := len(r.alerts(RuleAtExec)); n != 1 {
		t.Fatalf("chain without output: %d alerts at its deletion", n)
	}
}
