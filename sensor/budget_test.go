package sensor

import (
	"context"
	"testing"

	"github.com/tschsensor/tschsensor/detect"
	"github.com/tschsensor/tschsensor/sensor/output"
)

// TestStubBudget: with a tiny total stub budget the registration's stub is
// cut, the event says so, the anomaly is counted, and the budget is whole
// again once the calls are done.
func TestStubBudget(t *testing.T) {
	var evs []*detect.Event
	out := output.NewOutput()
	det := detect.New(detect.Options{}, func(e *detect.Event) { evs = append(evs, e); out.Emit(e) })
	ord := newOrderer(directRecorder{det})
	w := NewWorker(Options{MaxStubTotal: 512}, NewResolver(ord), nil)
	if err := replayFile(context.Background(), &orderedWorker{w, ord}, "../pcaps/impacket-atexec-smb2-clear.pcap", nil); err != nil {
		t.Fatal(err)
	}
	w.Flush()
	ord.Flush()
	det.Flush()
	var reg *detect.Event
	for _, e := range evs {
		if e.Event.Kind == "event" && e.Event.Action == "SchRpcRegisterTask" {
			reg = e
		}
	}
	if reg == nil || !reg.DCERPC.Truncated {
		t.Fatalf("registration event %+v: want it marked truncated", reg)
	}
	if w.Stats().Anomalies["dcerpc_stub_budget_exhausted"] == 0 {
		t.Error("budget exhaustion not counted")
	}
	if w.stubBytes != 0 {
		t.Errorf("%d stub bytes still held after every call finished", w.stubBytes)
	}
}
