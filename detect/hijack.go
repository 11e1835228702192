package detect

import (
	"net/netip"
	"strings"
	"time"

	"github.com/tschsensor/tschsensor/dissect"
)

// hijack is the stateful rule task_hijack: an existing task's definition
// replaced (SchRpcRegisterTask with TASK_UPDATE and other XML), run, then
// restored to the XML it had before: the SolarWinds intruders' pattern,
// which leaves the task as it was. A task is known by a registration or a
// SchRpcRetrieveTask answer seen before; its XML is remembered by digest,
// per server and path, for at most Options.MaxPairs tasks.
type hijack struct {
	window time.Duration
	max    int
	tasks  map[taskKey]*taskState
}

type taskKey struct {
	server netip.Addr
	path   string // lower case
}

type taskState struct {
	seen time.Time
	// known is the digest of the task's XML as last registered or read.
	known  string
	events []string // the calls that made it known, then the hijack's
	// replaced is known's value when another XML took its place.
	replaced string
	update   time.Time
	// with is what replaced it: what the hijacked task ran.
	with *dissect.TschInfo
	ran  bool
}

func newHijack(opt Options) *hijack {
	return &hijack{window: opt.AtExecWindow, max: opt.MaxPairs, tasks: make(map[taskKey]*taskState)}
}

func (h *hijack) state(c *Call, path string) *taskState {
	k := taskKey{c.Server, strings.ToLower(path)}
	s := h.tasks[k]
	if s == nil {
		if len(h.tasks) >= h.max {
			h.evictOldest()
		}
		s = &taskState{}
		h.tasks[k] = s
	}
	s.seen = c.Time
	return s
}

func (h *hijack) evictOldest() {
	var oldest taskKey
	var ot time.Time
	first := true
	for k, s := range h.tasks {
		if first || s.seen.Before(ot) || s.seen.Equal(ot) && (k.server.Less(oldest.server) || k.server == oldest.server && k.path < oldest.path) {
			oldest, ot, first = k, s.seen, false
		}
	}
	delete(h.tasks, oldest)
}

func (h *hijack) Call(a *Alerts, c *Call, ev *Event) {
	if c.Tsch == nil || c.Tsch.Task == nil || c.Tsch.Task.Path == "" || c.Fault != nil || ev.Event.Outcome == "failure" {
		return
	}
	t := c.Tsch.Task
	switch c.Op() {
	case dissect.OpSchRpcRetrieveTask:
		if t.XMLSHA256 == "" {
			return
		}
		s := h.state(c, t.Path)
		if s.replaced == "" {
			s.known, s.events = t.XMLSHA256, []string{ev.Event.ID}
		}
	case dissect.OpSchRpcRegisterTask:
		if t.XMLSHA256 == "" || c.Tsch.Register == nil {
			return
		}
		s := h.state(c, t.Path)
		switch {
		case s.replaced != "" && t.XMLSHA256 == s.replaced:
			if s.ran && c.Time.Sub(s.update) <= h.window {
				s.events = append(s.events, ev.Event.ID)
				al := a.newAlert(RuleTaskHijack, c, ev, s.events, nil)
				al.Event.Reason = "task definition replaced (TASK_UPDATE), run, and restored to its previous XML"
				al.Event.Start = rfc3339(s.update)
				// The restored task is what was there before; the alert
				// shows what the task ran in between.
				al.Tsch = s.with
				a.publish(al)
			}
			s.known, s.replaced, s.ran, s.with, s.events = t.XMLSHA256, "", false, nil, []string{ev.Event.ID}
		case s.replaced != "":
			// Replaced again: the original is still the one to watch for.
			s.events, s.with = append(s.events, ev.Event.ID), c.Tsch
		case s.known != "" && t.XMLSHA256 != s.known && c.Tsch.Register.Flags&dissect.TaskUpdate != 0:
			s.replaced, s.update, s.ran, s.with = s.known, c.Time, false, c.Tsch
			s.known = t.XMLSHA256
			s.events = append(s.events, ev.Event.ID)
		default:
			s.known, s.events = t.XMLSHA256, []string{ev.Event.ID}
		}
	case dissect.OpSchRpcRun:
		if s := h.tasks[taskKey{c.Server, strings.ToLower(t.Path)}]; s != nil && s.replaced != "" {
			s.ran, s.seen = true, c.Time
			s.events = append(s.events, ev.Event.ID)
		}
	case dissect.OpSchRpcDelete:
		delete(h.tasks, taskKey{c.Server, strings.ToLower(t.Path)})
	}
}

func (h *hijack) Advance(*Alerts, time.Time) {}

func (h *hijack) Flush(*Alerts) { clear(h.tasks) }
