package detect

import (
	"time"

	"github.com/tschsensor/tschsensor/dissect"
)

// recon is the stateful rule remote_task_recon: enumerating or reading back
// tasks raises one alert per (client, server) pair per window, not one per
// call (schtasks /query makes dozens).
type recon struct {
	window time.Duration
	max    int
	last   map[pairKey]time.Time
}

func newRecon(opt Options) *recon {
	return &recon{window: opt.AtExecWindow, max: opt.MaxPairs, last: make(map[pairKey]time.Time)}
}

// reconOps read tasks without changing them.
var reconOps = []dissect.Op{dissect.OpNetrJobEnum, dissect.OpNetrJobGetInfo,
	dissect.OpSchRpcEnumTasks, dissect.OpSchRpcEnumFolders, dissect.OpSchRpcRetrieveTask,
	dissect.OpSchRpcGetTaskInfo, dissect.OpSchRpcEnumInstances}

func (r *recon) Call(a *Alerts, c *Call, ev *Event) {
	op := c.Op()
	found := false
	for _, o := range reconOps {
		found = found || o == op
	}
	if !found {
		return
	}
	k := pairKey{c.Client, c.Server}
	if t, ok := r.last[k]; ok && c.Time.Sub(t) < r.window {
		return
	}
	if len(r.last) >= r.max {
		// Full: forget the pairs past their window; if none is, every
		// pair is recent and one more alert is the lesser harm.
		for pk, t := range r.last {
			if c.Time.Sub(t) >= r.window {
				delete(r.last, pk)
			}
		}
		if len(r.last) >= r.max {
			return
		}
	}
	r.last[k] = c.Time
	a.alert(RuleTaskRecon, c, ev, []string{ev.Event.ID}, nil)
}

func (r *recon) Advance(*Alerts, time.Time) {}

func (r *recon) Flush(*Alerts) { clear(r.last) }
