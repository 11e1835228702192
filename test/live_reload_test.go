package live_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/gopacket/pcapgo"

	"github.com/tschsensor/tschsensor/internal/testpcap"
)

// Rules files of TestLiveRulesReload. The first entry is the same in both,
// so its count must go on across the reload; the second one is new.
const (
	reloadRulesBefore = `suppress:
  - rule: remote_task_registered
    source: [10.77.0.0/24]
    reason: lab registrations
`
	reloadRulesAfter = reloadRulesBefore + `  - rule: atexec
    source: [10.77.0.1]
    reason: our jump host
`
)

// reloadCopies: the atexec capture repeated, each copy its own connection
// with client port 20000+k, reloadGap apart in capture time (which
// tcpreplay follows): the replay lasts reloadCopies×reloadGap.
const (
	reloadCopies = 60
	reloadGap    = 100 * time.Millisecond
)

// TestLiveRulesReload: `tschsensor run` with --rules captures a replay of
// atexec chains; mid-stream the rules file gains a suppression of atexec
// and the sensor gets SIGHUP. No packet may be lost (kernel, sensor and
// delivery counters), the atexec alerts must be exactly those of the first
// copies (the old file) and every later chain counted as suppressed (the
// new file), the unchanged entry's count must cover the whole run, and the
// reload must be logged.
func TestLiveRulesReload(t *testing.T) {
	needLive(t)
	src := "../pcaps/impacket-atexec-smb2-clear.pcap"
	copies := filepath.Join(t.TempDir(), "atexec-copies.pcap")
	if err := testpcap.Copies(src, copies, reloadCopies, reloadGap); err != nil {
		t.Fatal(err)
	}
	perCopy := countPackets(t, src)
	rules := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(rules, []byte(reloadRulesBefore), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := buildSensor(t)
	ns := newNetns(t, "hup")
	p := startSensor(t, ns, bin, "run", "-i", "rx0", "--stats-interval", "1s", "--observer", "e2e", "--rules", rules)

	replay := exec.Command("ip", "netns", "exec", ns, "tcpreplay", "-q", "-i", "tx0", copies)
	var replayOut bytes.Buffer
	replay.Stdout, replay.Stderr = &replayOut, &replayOut
	if err := replay.Start(); err != nil {
		t.Fatal(err)
	}
	replayDone := make(chan error, 1)
	go func() { replayDone <- replay.Wait() }()

	// Reload once a few chains have alerted, while the replay goes on.
	waitFor(t, p, "atexec alerts before the reload", func(r reloadRun) bool { return len(r.atexecPorts) >= 3 })
	select {
	case err := <-replayDone:
		t.Fatalf("replay ended before the reload (%v): the test needs traffic on both sides of it\n%s", err, replayOut.String())
	default:
	}
	if err := os.WriteFile(rules, []byte(reloadRulesAfter), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if err := <-replayDone; err != nil {
		t.Fatalf("tcpreplay: %v\n%s", err, replayOut.String())
	}
	// Every chain either alerted or was counted as suppressed.
	waitFor(t, p, "every chain alerted or suppressed", func(r reloadRun) bool {
		return len(r.atexecPorts)+int(r.suppressed(2)) >= reloadCopies
	})
	p.stop(t)

	r := parseReloadRun(t, p.stdout())
	if !strings.Contains(p.errText(), "msg=\"rules reloaded\"") {
		t.Errorf("reload not logged:\n%s", p.errText())
	}
	// Before the reload the old file: atexec alerts for the first copies,
	// in order and without gaps; after it the new one: none.
	if len(r.atexecPorts) == 0 || len(r.atexecPorts) == reloadCopies {
		t.Errorf("%d of %d chains alerted: the reload did not fall mid-stream", len(r.atexecPorts), reloadCopies)
	}
	for i, port := range r.atexecPorts {
		if port != 20000+i {
			t.Errorf("atexec alert %d from client port %d, want %d: an alert after the reload, or one missing before it", i, port, 20000+i)
			break
		}
	}
	if got := len(r.atexecPorts) + int(r.suppressed(2)); got != reloadCopies {
		t.Errorf("%d atexec alerts + %d suppressed = %d, want %d chains", len(r.atexecPorts), r.suppressed(2), got, reloadCopies)
	}
	if r.alertAfterSuppression {
		t.Error("an atexec alert after a stats line had counted the new entry's first suppression")
	}
	// The unchanged entry kept counting across the reload: every copy's
	// registration, none of them alerted.
	if r.registered != 0 || r.suppressed(1) != reloadCopies {
		t.Errorf("remote_task_registered: %d alerts, %d suppressed by the unchanged entry; want 0 and %d",
			r.registered, r.suppressed(1), reloadCopies)
	}
	m := r.last
	t.Logf("%d chains alerted before the reload, %d suppressed after it; %d TCP packets, kernel %d packets %d drops",
		len(r.atexecPorts), r.suppressed(2), m.Packets.TCP, m.Kernel.Packets, m.Kernel.Drops)
	// Nothing lost on the way: kernel ring, sensor and outputs.
	if m.Kernel.Drops != 0 || m.DroppedEvents != 0 || m.DroppedRecords != 0 {
		t.Errorf("drops: kernel %d, events %d, records %d", m.Kernel.Drops, m.DroppedEvents, m.DroppedRecords)
	}
	if want := uint64(reloadCopies * perCopy); m.Packets.TCP != want || m.Kernel.Packets < want {
		t.Errorf("sensor saw %d TCP packets, kernel %d; %d were sent", m.Packets.TCP, m.Kernel.Packets, want)
	}
}

// reloadRun is what TestLiveRulesReload reads from the sensor's stdout.
type reloadRun struct {
	atexecPorts []int // client ports of the atexec alerts, in output order
	registered  int   // remote_task_registered alerts
	// alertAfterSuppression: an atexec alert came after a stats line that
	// counted a suppression by entry 2.
	alertAfterSuppression bool
	last                  reloadMetric
}

type reloadMetric struct {
	Kernel         struct{ Packets, Drops uint64 }
	DroppedEvents  uint64 `json:"dropped_events"`
	DroppedRecords uint64 `json:"dropped_records"`
	Packets        struct{ TCP uint64 }
	Output         struct {
		Suppressed []struct {
			Entry int
			Count uint64
		}
	}
}

// suppressed returns the count of suppress entry n in the last stats line.
func (r reloadRun) suppressed(n int) uint64 {
	for _, s := range r.last.Output.Suppressed {
		if s.Entry == n {
			return s.Count
		}
	}
	return 0
}

func parseReloadRun(t *testing.T, out []byte) reloadRun {
	t.Helper()
	var r reloadRun
	seen := false // a stats line counted entry 2
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		var ev struct {
			Event  struct{ Kind string }
			Source struct{ Port int }
			Rule   struct{ ID string }
			Metric *reloadMetric
		}
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("bad JSON line %q: %v", sc.Text(), err)
		}
		switch {
		case ev.Metric != nil:
			r.last = *ev.Metric
			if r.suppressed(2) > 0 {
				seen = true
			}
		case ev.Event.Kind == "alert" && ev.Rule.ID == "atexec":
			r.atexecPorts = append(r.atexecPorts, ev.Source.Port)
			r.alertAfterSuppression = r.alertAfterSuppression || seen
		case ev.Event.Kind == "alert" && ev.Rule.ID == "remote_task_registered":
			r.registered++
		}
	}
	return r
}

// waitFor polls the sensor's output until ok holds; the bound only keeps a
// broken sensor from hanging the test.
func waitFor(t *testing.T, p *sensorProc, what string, ok func(reloadRun) bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !ok(parseReloadRun(t, p.stdout())) {
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: not after 30s\nstdout:\n%s\nstderr:\n%s", what, p.stdout(), p.errText())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// countPackets counts the packets of a capture.
func countPackets(t *testing.T, path string) int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	n := 0
	for {
		_, _, err := r.ReadPacketData()
		if err == io.EOF {
			return n
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		n++
	}
}
