package sensor

import (
	"net/netip"
	"testing"
	"time"

	"github.com/tschsensor/tschsensor/detect"
	"github.com/tschsensor/tschsensor/dissect"
)

type collectRecorder struct{ calls []*detect.Call }

func (c *collectRecorder) Call(x *detect.Call) { c.calls = append(c.calls, x) }
func (c *collectRecorder) File(*detect.FileOp) {}

// TestResolverHoldsUntilEPM: a call the worker could not name is held until
// the endpoint mapper's answer for its port arrives, whatever the order, and
// dropped (counted) when none comes.
func TestResolverHoldsUntilEPM(t *testing.T) {
	server := netip.MustParseAddr("10.77.0.2")
	t0 := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	mk := func(port uint16) *detect.Call {
		return &detect.Call{Time: t0, Endpoints: detect.Endpoints{Server: server, ServerPort: port}, Opnum: 1, Unresolved: true}
	}
	var out collectRecorder
	r := NewResolver(&out)
	r.Call(mk(49667))
	r.Call(mk(50000))
	r.EPM(server, 49668, dissect.IfaceITaskSchedulerService.UUID(), t0)
	if len(out.calls) != 0 {
		t.Fatalf("%d calls passed before their port was named", len(out.calls))
	}
	r.EPM(server, 49667, dissect.IfaceITaskSchedulerService.UUID(), t0)
	if len(out.calls) != 1 || out.calls[0].Iface != dissect.IfaceITaskSchedulerService || out.calls[0].Unresolved {
		t.Fatalf("after the answer: %+v", out.calls)
	}
	// Later calls to a known port pass at once.
	r.Call(mk(49667))
	if len(out.calls) != 2 {
		t.Fatalf("%d calls, want 2", len(out.calls))
	}
	// A port serving another interface never names the call.
	r.EPM(server, 50000, "12345778-1234-abcd-ef00-0123456789ac", t0)
	r.Flush()
	if r.Resolved != 2 || r.Dropped != 1 || len(out.calls) != 2 {
		t.Errorf("resolved %d dropped %d passed %d, want 2 1 2", r.Resolved, r.Dropped, len(out.calls))
	}
}
