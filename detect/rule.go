package detect

import (
	"strings"
	"time"

	"github.com/tschsensor/tschsensor/dissect"
)

// Rule looks at one call, already rendered as its event, and raises alerts
// through a. It is net/http's Handler shape: stateless rules are RuleFunc
// values in a table (rules.go), stateful ones (atexec.go, recon.go, ...)
// are types that also keep time (Clock) and may read file operations
// (FileRule).
type Rule interface {
	Call(a *Alerts, c *Call, ev *Event)
}

// RuleFunc adapts a function to Rule.
type RuleFunc func(a *Alerts, c *Call, ev *Event)

// Call calls f(a, c, ev).
func (f RuleFunc) Call(a *Alerts, c *Call, ev *Event) { f(a, c, ev) }

// FileRule reads SMB file operations on disk shares.
type FileRule interface {
	File(a *Alerts, f *FileOp)
}

// Clock is a stateful rule that acts as capture time passes (closing what
// its window no longer covers) and when the input ends.
type Clock interface {
	Advance(a *Alerts, now time.Time)
	Flush(a *Alerts)
}

// onOps is a stateless rule raising id on every call of the operations.
func onOps(id string, ops ...dissect.Op) Rule {
	return RuleFunc(func(a *Alerts, c *Call, ev *Event) {
		op := c.Op()
		for _, o := range ops {
			if o == op {
				a.alert(id, c, ev, []string{ev.Event.ID}, nil)
				return
			}
		}
	})
}

// Op returns the call's operation.
func (c *Call) Op() dissect.Op { return dissect.OpOf(c.Iface, c.Opnum) }

// Alerts builds alerts and hands them on: the one place where the loaded
// rules file (severity overrides, suppressions) applies and alerts are
// counted.
type Alerts struct {
	observer string
	emit     func(*Event)
	stats    *Stats
	// rules is the rules file in force for the record being processed.
	rules *Ruleset
}

// alert emits a rule's alert built on the call c and its event ev.
func (d *Alerts) alert(id string, c *Call, ev *Event, related []string, why []string) {
	d.publish(d.newAlert(id, c, ev, related, why))
}

// publish applies the rules file to an alert and emits it unless an entry
// suppresses it.
func (d *Alerts) publish(a *Event) {
	if d.rules != nil && a.Rule != nil {
		if sev, ok := d.rules.severity[a.Rule.ID]; ok {
			a.Event.Severity = sev
		}
		if d.rules.suppress(a) {
			d.stats.Suppressed++
			return
		}
	}
	d.stats.Alerts++
	d.emit(a)
}

// newAlert builds a built-in rule's alert on the call c and its event ev.
func (d *Alerts) newAlert(id string, c *Call, ev *Event, related []string, why []string) *Event {
	return alertFrom(ruleBook(id), c, ev, related, why)
}

// alertFrom builds the alert of a rule definition on the call c and its
// event ev.
func alertFrom(def ruleDef, c *Call, ev *Event, related []string, why []string) *Event {
	id := def.id
	sev := def.severity
	if len(why) > 0 && sev < SeverityHigh {
		sev = SeverityHigh
	}
	if len(why) >= 3 && sev < SeverityCritical {
		sev = SeverityCritical
	}
	ruleset := def.ruleset
	if ruleset == "" {
		ruleset = "tschsensor"
	}
	a := &Event{
		Timestamp: ev.Timestamp,
		Event: EventMeta{Kind: "alert", ID: eventID("alert:"+id, c.recordKey(), c.Dup),
			Category: []string{"intrusion_detection"}, Type: []string{"info"}, Action: ev.Event.Action,
			Outcome: ev.Event.Outcome, Severity: sev, Dataset: "tschsensor.alert", Reason: strings.Join(why, "; ")},
		Observer:    ev.Observer,
		Source:      ev.Source,
		Destination: ev.Destination,
		Network:     ev.Network,
		User:        ev.User,
		Rule:        &RuleMeta{ID: id, Name: def.name, Description: def.description, Ruleset: ruleset, Reference: def.technique.Reference},
		Threat:      &Threat{Framework: "MITRE ATT&CK", Technique: def.technique, Tactic: def.tactic},
		SMB:         ev.SMB,
		DCERPC:      ev.DCERPC,
		Tsch:        ev.Tsch,
		Related:     &Related{Events: related, IP: []string{ev.Source.IP, ev.Destination.IP}},
		Pcap:        ev.Pcap,
		Tags:        def.tags,
	}
	if ev.User != nil && ev.User.Name != "" {
		a.Related.User = []string{ev.User.Name}
	}
	if id == RuleTaskRegistered && c.Tsch != nil && c.Tsch.Register != nil {
		switch {
		case c.Tsch.Register.Flags&dissect.TaskUpdate != 0 && c.Tsch.Register.Flags&dissect.TaskCreate == 0:
			a.Event.Type = []string{"change"}
		case c.Tsch.Register.Flags&dissect.TaskCreate != 0:
			a.Event.Type = []string{"creation"}
		}
	}
	return a
}
