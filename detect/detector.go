package detect

import (
	"sync/atomic"
	"time"
)

// Defaults of Options.
const (
	// DefaultAtExecWindow bounds the time from registration to the last step
	// of an AtExec chain; Impacket's atexec finishes within seconds.
	DefaultAtExecWindow = 5 * time.Minute
	// DefaultMaxPairs bounds correlation state (client, server pairs).
	DefaultMaxPairs = 65536
)

// Options configures a Detector.
type Options struct {
	Observer     string
	AtExecWindow time.Duration
	MaxPairs     int
	// Rules holds the rules file in force (nil or empty: none). The owner
	// may swap it at any time (SIGHUP); the detector reads it once per
	// record.
	Rules *atomic.Pointer[Ruleset]
}

// Stats counts the detector's work.
type Stats struct {
	Events, Alerts, FileOps uint64
	// PairsEvicted counts correlation state dropped at the MaxPairs bound.
	PairsEvicted uint64
	// Suppressed counts alerts a rules file entry suppressed (per entry:
	// Ruleset.Suppressions).
	Suppressed uint64
}

// Detector renders calls as events and runs the rules on them. It is used
// from one goroutine.
type Detector struct {
	opt    Options
	emit   func(*Event)
	alerts *Alerts
	// calls, files and clocks are the rules, in the order they run.
	calls  []Rule
	files  []FileRule
	clocks []Clock
	atexec *atExec
	stats  Stats
	addrs  addrStrings
}

// New returns a Detector that hands every event and alert to emit.
func New(opt Options, emit func(*Event)) *Detector {
	if opt.AtExecWindow <= 0 {
		opt.AtExecWindow = DefaultAtExecWindow
	}
	if opt.MaxPairs <= 0 {
		opt.MaxPairs = DefaultMaxPairs
	}
	d := &Detector{opt: opt, emit: emit}
	d.alerts = &Alerts{observer: opt.Observer, emit: emit, stats: &d.stats}
	d.atexec = newAtExec(d.alerts, opt)
	rc, hj, lj := newRecon(opt), newHijack(opt), newLegacyJob(opt)
	d.calls = append(append(d.calls, statelessRules...), rc, d.atexec, hj, lj)
	d.files = []FileRule{taskFile{observer: opt.Observer}, d.atexec, lj}
	d.clocks = []Clock{rc, d.atexec, hj, lj}
	return d
}

// Stats returns the counters.
func (d *Detector) Stats() Stats { return d.stats }

// Advance moves the detector's clock to t when that is later: chains past
// their window raise their alert. Records advance it with their capture
// time; live capture also calls it on a quiet link, with the capture time
// the sensor has reached, so partial chains close on time. Replay never
// needs to.
func (d *Detector) Advance(t time.Time) { d.begin(t) }

// begin takes the rules file in force for one record and moves capture
// time forward, closing what the stateful rules' windows no longer cover.
func (d *Detector) begin(t time.Time) {
	d.loadRules()
	for _, c := range d.clocks {
		c.Advance(d.alerts, t)
	}
}

func (d *Detector) loadRules() {
	d.alerts.rules = nil
	if d.opt.Rules != nil {
		d.alerts.rules = d.opt.Rules.Load()
	}
}

// Call renders c as an event, emits it, then runs the rules on it.
func (d *Detector) Call(c *Call) {
	d.begin(c.Time)
	ev := callEvent(c, d.opt.Observer, &d.addrs)
	d.stats.Events++
	d.emit(ev)
	for _, r := range d.calls {
		r.Call(d.alerts, c, ev)
	}
	if rs := d.alerts.rules; rs != nil {
		rs.custom(d.alerts, c, ev)
	}
}

// File takes an SMB file operation on a disk share.
func (d *Detector) File(f *FileOp) {
	d.begin(f.Time)
	if f.Op == FileOpLogoff {
		d.atexec.logoff(f)
		return
	}
	d.stats.FileOps++
	for _, r := range d.files {
		r.File(d.alerts, f)
	}
	if rs := d.alerts.rules; rs != nil {
		rs.customFile(d.alerts, f, d.opt.Observer)
	}
}

// Flush closes every open correlation; call it when the input ends.
func (d *Detector) Flush() {
	d.loadRules()
	for _, c := range d.clocks {
		c.Flush(d.alerts)
	}
}
