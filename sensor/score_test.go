package sensor

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestScore builds the tschsensor binary and runs the shared scorer over the
// whole shared corpus with the project's bar: every task creation found,
// every scored alert raised, no false call or alert, 95% of fields right.
func TestScore(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and replays 66 captures; skipped with -short")
	}
	score := filepath.Join(plSharedDir, "tools", "score")
	if _, err := os.Stat(score); err != nil {
		t.Skipf("shared scorer not available (%v): run from a checkout with ../shared beside it", err)
	}
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("python3 (for the scorer) not installed")
	}
	bin := filepath.Join(t.TempDir(), "tschsensor")
	build := exec.Command("go", "build", "-o", bin, "../cmd/tschsensor")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	cmd := exec.Command(score, "--min-recall", "1", "--max-fp", "0", "--min-fields", "0.95", "--min-alert-recall", "1",
		"--", bin, "replay", "--quiet", "{pcap}")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	t.Logf("score: %s", lines[len(lines)-1])
	if err != nil {
		t.Errorf("score failed (%v):\n%s\n%s", err, stdout.String(), stderr.String())
	}
}
