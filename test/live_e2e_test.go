package live_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// sharedPcaps is the team's read-only corpus beside the repository.
const sharedPcaps = "../../shared/pcaps"

var e2eCaptures = []string{"A_hangchuanin__atexec.pcapng", "A_suricata-verify__dcerpc-smb-ctxid.pcap"}

// eventKeys keeps what live and replay must agree on: the calls and
// alerts an analyst acts on (ids and times differ: live time is now).
func eventKeys(t *testing.T, out []byte) (keys []string, metrics int) {
	t.Helper()
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		var ev struct {
			Event               struct{ Kind, Action, Dataset string }
			Source, Destination struct{ IP string }
			DCERPC              struct{ Interface struct{ Name string } } `json:"dcerpc"`
			Tsch                struct{ Task struct{ Path string } }
			Rule                struct{ ID string }
		}
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("bad JSON line %q: %v", sc.Text(), err)
		}
		if ev.Event.Kind == "metric" {
			if ev.Event.Dataset != "tschsensor.stats" {
				t.Errorf("metric dataset %q", ev.Event.Dataset)
			}
			metrics++
			continue
		}
		keys = append(keys, fmt.Sprintf("%s %s %s %s %s>%s %s", ev.Event.Kind, ev.Event.Action, ev.DCERPC.Interface.Name,
			ev.Tsch.Task.Path, ev.Source.IP, ev.Destination.IP, ev.Rule.ID))
	}
	slices.Sort(keys)
	return keys, metrics
}

// TestLiveCaptureMatchesReplay replays captures into one end of a veth
// pair inside a network namespace made for the test, captures on the
// other end with `tschsensor run`, and compares with `tschsensor replay`.
func TestLiveCaptureMatchesReplay(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("live capture test needs root (network namespace, veth, AF_PACKET)")
	}
	for _, tool := range []string{"ip", "tcpreplay"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (apt-get install -y iproute2 tcpreplay)", tool)
		}
	}
	var files []string
	for _, c := range e2eCaptures {
		p := filepath.Join(sharedPcaps, c)
		if _, err := os.Stat(p); err != nil {
			t.Skipf("shared corpus absent: %v", err)
		}
		files = append(files, p)
	}
	bin := filepath.Join(t.TempDir(), "tschsensor")
	build := exec.Command("go", "build", "-o", bin, "../cmd/tschsensor")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}

	want, err := exec.Command(bin, append([]string{"replay", "--quiet"}, files...)...).Output()
	if err != nil {
		t.Fatalf("replay: %v", err)
	}
	wantKeys, _ := eventKeys(t, want)
	if len(wantKeys) == 0 {
		t.Fatal("replay found no events: nothing to compare")
	}

	ns := fmt.Sprintf("tschlive%d", os.Getpid())
	ip := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	ip("netns", "add", ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	// A large MTU: captures taken with segmentation offload hold frames
	// longer than 1514 bytes.
	ip("-n", ns, "link", "add", "name", "tx0", "mtu", "65000", "type", "veth", "peer", "name", "rx0", "mtu", "65000")
	ip("-n", ns, "link", "set", "tx0", "up")
	ip("-n", ns, "link", "set", "rx0", "up")

	sensor := exec.Command("ip", "netns", "exec", ns, bin, "run", "-i", "rx0", "--workers", "2",
		"--stats-interval", "1h", "--observer", "e2e")
	var stdout, stderr bytes.Buffer
	sensor.Stdout = &stdout
	pr, pw, _ := os.Pipe()
	sensor.Stderr = pw
	if err := sensor.Start(); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	exited := make(chan error, 1)
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(pr)
		once := false
		for sc.Scan() {
			stderr.WriteString(sc.Text() + "\n")
			if !once && strings.Contains(sc.Text(), "msg=capturing") {
				once = true
				close(ready)
			}
		}
		exited <- sensor.Wait()
	}()
	defer sensor.Process.Kill()
	select {
	case <-ready:
	case err := <-exited:
		t.Fatalf("sensor exited before capturing: %v\n%s", err, stderr.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("sensor not capturing after 30s:\n%s", stderr.String())
	}
	for _, f := range files {
		// --mbps paces the replay without the captures' idle gaps.
		out, err := exec.Command("ip", "netns", "exec", ns, "tcpreplay", "-q", "-i", "tx0", "--mbps", "50", f).CombinedOutput()
		if err != nil {
			t.Fatalf("tcpreplay %s: %v\n%s", f, err, out)
		}
	}
	if err := sensor.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("sensor exit after SIGTERM: %v (want status 0)\n%s", err, stderr.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("sensor did not stop after SIGTERM:\n%s", stderr.String())
	}
	gotKeys, metrics := eventKeys(t, stdout.Bytes())
	if !slices.Equal(wantKeys, gotKeys) {
		t.Errorf("live events differ from replay\nreplay:\n  %s\nlive:\n  %s\nsensor stderr:\n%s",
			strings.Join(wantKeys, "\n  "), strings.Join(gotKeys, "\n  "), stderr.String())
	}
	if metrics == 0 {
		t.Error("no closing tschsensor.stats metric line")
	}
	if !strings.Contains(stderr.String(), "kernel:") {
		t.Errorf("no kernel statistics in the summary:\n%s", stderr.String())
	}
}
