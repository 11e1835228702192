package detect

import (
	"sync/atomic"
	"testing"

	"github.com/tschsensor/tschsensor/dissect"
)

// BenchmarkDetectorCall measures one registration through the detector
// without a rules file and with one suppression and one custom rule (the
// custom rule marshals the event to evaluate its condition).
func BenchmarkDetectorCall(b *testing.B) {
	for _, tc := range []struct {
		name  string
		rules string
	}{
		{"no-rules", ""},
		{"suppress+custom", "suppress:\n  - rule: atexec\n    source: [10.9.0.0/16]\nrules:\n  - id: w\n    condition: dcerpc.operation == \"SchRpcRegisterTask\" && tsch.task.arguments.contains(\"whoami\")\n"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			var p atomic.Pointer[Ruleset]
			if tc.rules != "" {
				rs, err := ParseRules("bench.yaml", []byte(tc.rules))
				if err != nil {
					b.Fatal(err)
				}
				p.Store(rs)
			}
			d := New(Options{Observer: "bench", Rules: &p}, func(*Event) {})
			c := newCall(0, dissect.IfaceITaskSchedulerService, opRegister, overTCP(),
				task(`\Updater`, &dissect.TaskInfo{Command: "cmd.exe", Arguments: "/c whoami"}))
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				d.Call(c)
			}
		})
	}
}
