package sensor

import (
	"context"
	"io"
	"strings"
	"testing"

	"github.com/tschsensor/tschsensor/detect"
	"github.com/tschsensor/tschsensor/sensor/output"
)

// TestMemoryBudgetReported: the summary and the counters object say the
// budget the user set, not the workers' share of it, and the shares add up
// to it (with one worker and several).
func TestMemoryBudgetReported(t *testing.T) {
	const budget = 384 << 20
	for _, workers := range []int{1, 3, 7} {
		out := output.NewOutput(output.NewWriterSink(io.Discard, false))
		res := Replay(context.Background(), ReplayConfig{Options: Options{MemoryBudget: budget}, Workers: workers,
			Detect: detect.Options{Observer: "t"}, Output: out}, []string{"../pcaps/impacket-at-smb2.pcap"})
		if err := out.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
		for _, err := range res.Errors {
			t.Fatalf("replay: %v", err)
		}
		m := res.Stats.Counters(OutputCounters{}, out.Delivery()).Memory
		if m.Budget != budget || m.ResolverBudget <= 0 || m.WorkersBudget <= 0 ||
			m.WorkersBudget+m.ResolverBudget > budget || budget-m.WorkersBudget-m.ResolverBudget >= int64(workers) {
			t.Errorf("%d workers: memory counters %+v, want a budget of %d shared out", workers, m, budget)
		}
		if m.WorkersPeak <= 0 {
			t.Errorf("%d workers: no peak accounted: %+v", workers, m)
		}
		var sb strings.Builder
		res.Stats.WriteSummary(&sb, res.Elapsed, 0, 0, out.Delivery())
		if !strings.Contains(sb.String(), "memory: budget 384.0 MiB (workers 336.0 MiB") {
			t.Errorf("%d workers: summary does not say the budget set:\n%s", workers, sb.String())
		}
	}
}
