package dissect

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

// testTaskXML exercises every field ParseTaskXML reads: two principals with
// the actions' Context naming the second, a COM handler before the Exec
// action, three trigger kinds and entities in values.
const testTaskXML = `<?xml version="1.0" encoding="UTF-16"?>
<Task version="1.2" xmlns="http://schemas.microsoft.com/windows/2004/02/mit/task">
  <RegistrationInfo>
    <Date>2024-01-02T03:04:05</Date>
    <Author>CORP\admin</Author>
    <Description>Updater &amp; cleanup</Description>
    <URI>\Microsoft\Windows\Updater</URI>
  </RegistrationInfo>
  <Triggers>
    <CalendarTrigger id="c1">
      <Repetition>
        <Interval>PT5M</Interval>
        <Duration>P1D</Duration>
      </Repetition>
      <StartBoundary>2024-01-02T03:04:05</StartBoundary>
      <EndBoundary>2025-01-01T00:00:00</EndBoundary>
      <Enabled>true</Enabled>
      <RandomDelay>PT1M</RandomDelay>
      <ScheduleByDay><DaysInterval>1</DaysInterval></ScheduleByDay>
    </CalendarTrigger>
    <LogonTrigger><Enabled>false</Enabled><UserId>CORP\bob</UserId><Delay>PT30S</Delay></LogonTrigger>
    <EventTrigger><Subscription>&lt;QueryList&gt;&lt;/QueryList&gt;</Subscription></EventTrigger>
  </Triggers>
  <Principals>
    <Principal id="Users"><GroupId>S-1-5-32-545</GroupId></Principal>
    <Principal id="LocalSystem">
      <UserId>S-1-5-18</UserId>
      <LogonType>ServiceAccount</LogonType>
      <RunLevel>HighestAvailable</RunLevel>
    </Principal>
  </Principals>
  <Settings>
    <Enabled>true</Enabled>
    <Hidden>true</Hidden>
    <IdleSettings><StopOnIdleEnd>true</StopOnIdleEnd></IdleSettings>
  </Settings>
  <Actions Context="LocalSystem">
    <ComHandler><ClassId>{0f87369f-a4e5-4cfc-bd3e-73e6154572dd}</ClassId><Data><![CDATA[payload]]></Data></ComHandler>
    <Exec>
      <Command>cmd.exe</Command>
      <Arguments>/C whoami &gt; %windir%\Temp\x.tmp 2&gt;&amp;1</Arguments>
      <WorkingDirectory>C:\Windows</WorkingDirectory>
    </Exec>
    <ShowMessage><Title>hi</Title><Body>there</Body></ShowMessage>
  </Actions>
</Task>
`

func wantTestTask() *TaskInfo {
	return &TaskInfo{
		Command:          "cmd.exe",
		Arguments:        `/C whoami > %windir%\Temp\x.tmp 2>&1`,
		WorkingDirectory: `C:\Windows`,
		RunAs:            "S-1-5-18",
		Hidden:           ptr(true),
		Enabled:          ptr(true),
		LogonType:        "ServiceAccount",
		RunLevel:         "HighestAvailable",
		Actions: []TaskAction{
			{Type: "com_handler", ClassID: "{0f87369f-a4e5-4cfc-bd3e-73e6154572dd}", Data: "payload"},
			{Type: "exec", Command: "cmd.exe", Arguments: `/C whoami > %windir%\Temp\x.tmp 2>&1`, WorkingDirectory: `C:\Windows`},
			{Type: "show_message", Title: "hi", Body: "there"},
		},
		Triggers: []TaskTrigger{
			{Type: "calendar", ID: "c1", StartBoundary: "2024-01-02T03:04:05", EndBoundary: "2025-01-01T00:00:00",
				Enabled: ptr(true), RepetitionInterval: "PT5M", RepetitionDuration: "P1D", RandomDelay: "PT1M",
				Schedule: "by_day"},
			{Type: "logon", Enabled: ptr(false), UserID: `CORP\bob`, Delay: "PT30S"},
			{Type: "event", Subscription: "<QueryList></QueryList>"},
		},
		Author:      `CORP\admin`,
		Description: "Updater & cleanup",
		URI:         `\Microsoft\Windows\Updater`,
		Date:        "2024-01-02T03:04:05",
	}
}

func TestParseTaskXML(t *testing.T) {
	got, err := ParseTaskXML(testTaskXML, 0)
	if err != nil {
		t.Fatal(err)
	}
	if want := wantTestTask(); !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
}

func TestParseTaskXMLVariants(t *testing.T) {
	exec := func(cmd string) string {
		return "<Actions><Exec><Command>" + cmd + "</Command></Exec></Actions>"
	}
	for _, c := range []struct {
		name, doc string
		command   string
		runAs     string
		err       error // sentinel wanted, nil for none
	}{
		{"no namespace, no declaration", "<Task>" + exec("a.exe") + "</Task>", "a.exe", "", nil},
		{"other prefix", `<t:Task xmlns:t="` + TaskXMLNamespace + `">` +
			`<t:Actions><t:Exec><t:Command>b.exe</t:Command></t:Exec></t:Actions></t:Task>`, "b.exe", "", nil},
		{"byte order mark", "\uFEFF<?xml version=\"1.0\" encoding=\"UTF-16\"?><Task>" + exec("c.exe") + "</Task>", "c.exe", "", nil},
		{"invalid utf-8 and NUL", "<Task>" + exec("d\xff\x00.exe") + "</Task>", "d\uFFFD\uFFFD.exe", "", nil},
		{"first principal without Context", "<Task><Principals><Principal><GroupId>S-1-5-32-544</GroupId></Principal>" +
			"</Principals>" + exec("e.exe") + "</Task>", "e.exe", "S-1-5-32-544", nil},
		{"unclosed", "<Task>" + exec("f.exe") + "<Settings>", "f.exe", "", ErrMalformed},
		{"mismatched", "<Task>" + exec("g.exe") + "</Tusk>", "g.exe", "", ErrMalformed},
		{"unknown entity", "<Task>" + exec("h&nbsp;.exe") + "</Task>", "h&nbsp;.exe", "", ErrMalformed},
		{"depth bomb", "<Task>" + exec("i.exe") + strings.Repeat("<a>", 100) + strings.Repeat("</a>", 100) + "</Task>",
			"i.exe", "", ErrLimit},
		{"element bomb", "<Task>" + exec("j.exe") + strings.Repeat("<a/>", maxTaskXMLElements) + "</Task>", "j.exe", "", ErrLimit},
		{"not xml", "MZ\x90\x00\x03", "", "", ErrMalformed},
		{"empty", "", "", "", ErrMalformed},
		{"other root", "<Job>" + exec("k.exe") + "</Job>", "", "", ErrMalformed},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := ParseTaskXML(c.doc, 0)
			if c.err == nil && err != nil || c.err != nil && !errors.Is(err, c.err) {
				t.Fatalf("err = %v, want %v", err, c.err)
			}
			if got == nil {
				t.Fatal("nil result")
			}
			if got.Command != c.command || got.RunAs != c.runAs {
				t.Errorf("command %q run_as %q, want %q %q", got.Command, got.RunAs, c.command, c.runAs)
			}
		})
	}
}

func TestParseTaskXMLLimit(t *testing.T) {
	// Cut inside the Exec action: what came before is kept, and the start
	// of the command. A cut is no malformation.
	i := strings.Index(testTaskXML, "<Command>")
	got, err := ParseTaskXML(testTaskXML, i+12)
	if !errors.Is(err, ErrLimit) {
		t.Fatalf("err = %v, want ErrLimit", err)
	}
	if got.Author != `CORP\admin` || got.RunAs != "S-1-5-18" || len(got.Triggers) != 3 || got.Command != "cmd" || got.XMLMalformed {
		t.Errorf("partial result %+v", got)
	}
	// A cut never splits a rune.
	doc := "<Task><RegistrationInfo><Author>é</Author></RegistrationInfo></Task>"
	for n := 1; n < len(doc); n++ {
		if _, err := ParseTaskXML(doc, n); !errors.Is(err, ErrLimit) {
			t.Fatalf("limit %d: %v", n, err)
		}
	}
	if s := truncateUTF8("aé", 2); s != "a" {
		t.Errorf("truncateUTF8 split a rune: %q", s)
	}
}

func TestParseTaskXMLBounds(t *testing.T) {
	var b strings.Builder
	b.WriteString("<Task><Actions>")
	for i := 0; i < maxTaskActions+5; i++ {
		b.WriteString("<Exec><Command>x</Command></Exec>")
	}
	b.WriteString("</Actions><Triggers>")
	for i := 0; i < maxTaskTriggers+5; i++ {
		b.WriteString("<BootTrigger/>")
	}
	b.WriteString("</Triggers></Task>")
	got, err := ParseTaskXML(b.String(), 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Actions) != maxTaskActions || !got.ActionsTruncated || len(got.Triggers) != maxTaskTriggers || !got.TriggersTruncated {
		t.Errorf("%d actions (truncated %v), %d triggers (truncated %v)", len(got.Actions), got.ActionsTruncated,
			len(got.Triggers), got.TriggersTruncated)
	}
}

func BenchmarkParseTaskXML(b *testing.B) {
	b.ReportAllocs()
	b.SetBytes(int64(len(testTaskXML)))
	for b.Loop() {
		if _, err := ParseTaskXML(testTaskXML, 0); err != nil {
			b.Fatal(err)
		}
	}
}

func FuzzTaskXML(f *testing.F) {
	f.Add(testTaskXML, 0)
	f.Add(testTaskXML, 100)
	f.Add("<Task><Actions><Exec><Command>a</Command></Exec></Actions></Task>", 0)
	f.Add("<Task>"+strings.Repeat("<a>", 70), 0)
	f.Fuzz(func(t *testing.T, doc string, limit int) {
		if limit > 1<<20 {
			limit = 1 << 20
		}
		a, errA := ParseTaskXML(doc, limit)
		b, errB := ParseTaskXML(doc, limit)
		if a == nil || (errA == nil) != (errB == nil) || !reflect.DeepEqual(a, b) {
			t.Fatalf("parsing twice differs: %v / %v", errA, errB)
		}
		if errA != nil && !errors.Is(errA, ErrMalformed) && !errors.Is(errA, ErrLimit) {
			t.Fatalf("error %v is neither ErrMalformed nor ErrLimit", errA)
		}
		if len(a.Actions) > maxTaskActions || len(a.Triggers) > maxTaskTriggers {
			t.Fatalf("bounds exceeded: %d actions %d triggers", len(a.Actions), len(a.Triggers))
		}
	})
}
