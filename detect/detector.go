package detect

import (
	"net/netip"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/tschsensor/tschsensor/dissect"
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
}

// Stats counts the detector's work.
type Stats struct {
	Events, Alerts, FileOps uint64
	// PairsEvicted counts correlation state dropped at the MaxPairs bound.
	PairsEvicted uint64
}

// Detector renders calls as events and raises alerts. It is used from one
// goroutine.
type Detector struct {
	opt   Options
	emit  func(*Event)
	pairs map[pairKey]*pairState
	now   time.Time
	swept time.Time
	stats Stats
}

type pairKey struct{ client, server netip.Addr }

// chain is one candidate AtExec sequence.
type chain struct {
	start, last         time.Time
	register            *Call
	events              []string
	name                string // task name when visible ("nTMgxVrV")
	outName             string // output file the action redirects to, when visible
	ran, polled, delete bool
	outputFile          string
	outputRead          bool
	outputDeleted       bool
	outputBytes         uint64
	fileEvents          []*FileOp
	sealed              bool
	// expectOutput: the action writes its output where the client reads it
	// back, or the action could not be seen; raised marks a chain whose
	// alert is out, kept until its window ends so that late steps raise
	// nothing of their own.
	expectOutput bool
	raised       bool
}

type pairState struct {
	last   time.Time
	chains []*chain
	recon  time.Time
}

// New returns a Detector that hands every event and alert to emit.
func New(opt Options, emit func(*Event)) *Detector {
	if opt.AtExecWindow <= 0 {
		opt.AtExecWindow = DefaultAtExecWindow
	}
	if opt.MaxPairs <= 0 {
		opt.MaxPairs = DefaultMaxPairs
	}
	return &Detector{opt: opt, emit: emit, pairs: make(map[pairKey]*pairState)}
}

// Stats returns the counters.
func (d *Detector) Stats() Stats { return d.stats }

func (d *Detector) pair(ep Endpoints) *pairState {
	k := pairKey{ep.Client, ep.Server}
	p := d.pairs[k]
	if p == nil {
		if len(d.pairs) >= d.opt.MaxPairs {
			d.evictOldest()
		}
		p = &pairState{}
		d.pairs[k] = p
	}
	return p
}

func (d *Detector) evictOldest() {
	var oldest pairKey
	var ot time.Time
	first := true
	for k, p := range d.pairs {
		if first || p.last.Before(ot) || p.last.Equal(ot) && k.client.Less(oldest.client) {
			oldest, ot, first = k, p.last, false
		}
	}
	d.finishPair(d.pairs[oldest])
	delete(d.pairs, oldest)
	d.stats.PairsEvicted++
}

// Advance moves the detector's clock to t when that is later: chains past
// their window raise their alert. Records advance it with their capture
// time; live capture also calls it on a quiet link, with the capture time
// the sensor has reached, so partial chains close on time. Replay never
// needs to.
func (d *Detector) Advance(t time.Time) { d.advance(t) }

// advance moves capture time forward and closes chains past the window.
func (d *Detector) advance(t time.Time) {
	if t.After(d.now) {
		d.now = t
	}
	// Sweeping every pair on every record would be quadratic under load;
	// chains close at most a second (capture time) late.
	if d.now.Sub(d.swept) < time.Second {
		return
	}
	d.swept = d.now
	var done []pairKey
	for _, k := range d.sortedPairs() {
		p := d.pairs[k]
		kept := p.chains[:0]
		for _, c := range p.chains {
			if d.now.Sub(c.start) > d.opt.AtExecWindow {
				d.closeChain(c)
				continue
			}
			kept = append(kept, c)
		}
		p.chains = kept
		if len(p.chains) == 0 && d.now.Sub(p.last) > d.opt.AtExecWindow {
			done = append(done, k)
		}
	}
	for _, k := range done {
		delete(d.pairs, k)
	}
}

// Call renders c as an event and runs the rules on it.
func (d *Detector) Call(c *Call) {
	d.advance(c.Time)
	ev := CallEvent(c, d.opt.Observer)
	d.stats.Events++
	d.emit(ev)
	p := d.pair(c.Endpoints)
	p.last = c.Time
	op := dissect.OpName(c.Iface, c.Opnum)
	switch c.Iface {
	case dissect.IfaceITaskSchedulerService:
		d.tschCall(p, c, ev, op)
	case dissect.IfaceATSVC:
		switch op {
		case "NetrJobAdd":
			d.alert(RuleAtJobCreated, c, ev, []string{ev.Event.ID}, nil)
		case "NetrJobDel":
			d.alert(RuleTaskDeleted, c, ev, []string{ev.Event.ID}, nil)
		case "NetrJobEnum", "NetrJobGetInfo":
			d.recon(p, c, ev)
		}
	case dissect.IfaceSASec:
		switch op {
		case "SASetAccountInformation", "SASetNSAccountInformation":
			d.alert(RuleAccountSet, c, ev, []string{ev.Event.ID}, nil)
		}
	}
}

func taskPath(c *Call) string {
	if c.Tsch != nil && c.Tsch.Task != nil {
		return c.Tsch.Task.Path
	}
	return ""
}

// tempRedirectFile finds the file an action's output is redirected to in
// the Windows Temp folder ("> %windir%\Temp\nTMgxVrV.tmp 2>&1").
var tempRedirectFile = regexp.MustCompile(`(?i)>>?\s*"?(?:%windir%|%systemroot%|[a-z]:\\windows)\\temp\\([^\\\s"'<>|&]+)`)

// outputFile returns the output file name a registered task's action
// redirects into Windows\Temp, lower case, or "".
func outputFile(c *Call) string {
	if c.Tsch == nil || c.Tsch.Task == nil {
		return ""
	}
	m := tempRedirectFile.FindStringSubmatch(c.Tsch.Task.Arguments)
	if m == nil {
		m = tempRedirectFile.FindStringSubmatch(c.Tsch.Task.Command)
	}
	if m == nil {
		return ""
	}
	return strings.ToLower(m[1])
}

func taskName(path string) string {
	if i := strings.LastIndexByte(path, '\\'); i >= 0 {
		return path[i+1:]
	}
	return path
}

func (d *Detector) tschCall(p *pairState, c *Call, ev *Event, op string) {
	switch op {
	case "SchRpcRegisterTask":
		var why []string
		if c.Tsch != nil {
			why = taskRisk(c.Tsch.Task, taskPath(c))
		}
		d.alert(RuleTaskRegistered, c, ev, []string{ev.Event.ID}, why)
		if c.Transport == TransportNamedPipe && c.SMB != nil && strings.EqualFold(strings.TrimLeft(c.SMB.Pipe, `\`), "atsvc") {
			ch := &chain{start: c.Time, last: c.Time, register: c,
				events: []string{ev.Event.ID}, name: taskName(taskPath(c)), outName: outputFile(c), sealed: c.Encrypted && !c.Decrypted}
			ch.expectOutput = ch.outName != "" || c.Tsch == nil || c.Tsch.Task == nil
			p.chains = append(p.chains, ch)
		}
	case "SchRpcRun", "SchRpcGetLastRunInfo", "SchRpcDelete":
		if ch := p.match(c); ch != nil {
			ch.last = c.Time
			ch.events = append(ch.events, ev.Event.ID)
			switch op {
			case "SchRpcRun":
				ch.ran = true
			case "SchRpcGetLastRunInfo":
				ch.polled = true
			case "SchRpcDelete":
				ch.delete = true
			}
			d.maybeComplete(ch)
		} else if op == "SchRpcRun" {
			d.alert(RuleTaskRun, c, ev, []string{ev.Event.ID}, nil)
		} else if op == "SchRpcDelete" {
			d.alert(RuleTaskDeleted, c, ev, []string{ev.Event.ID}, nil)
		}
	case "SchRpcEnableTask":
		d.alert(RuleTaskEnabled, c, ev, []string{ev.Event.ID}, nil)
	case "SchRpcEnumTasks", "SchRpcEnumFolders", "SchRpcRetrieveTask", "SchRpcGetTaskInfo", "SchRpcEnumInstances":
		d.recon(p, c, ev)
	}
}

// match finds the open chain a follow-up call belongs to: the same task name
// when both are visible, else the newest chain on the same pair.
func (p *pairState) match(c *Call) *chain {
	name := taskName(taskPath(c))
	for i := len(p.chains) - 1; i >= 0; i-- {
		ch := p.chains[i]
		if name != "" && ch.name != "" {
			if strings.EqualFold(name, ch.name) {
				return ch
			}
			continue
		}
		return ch
	}
	return nil
}

func (d *Detector) recon(p *pairState, c *Call, ev *Event) {
	if !p.recon.IsZero() && c.Time.Sub(p.recon) < d.opt.AtExecWindow {
		return
	}
	p.recon = c.Time
	d.alert(RuleTaskRecon, c, ev, []string{ev.Event.ID}, nil)
}

// File takes an SMB file operation on a disk share.
func (d *Detector) File(f *FileOp) {
	d.advance(f.Time)
	d.stats.FileOps++
	path := strings.ToLower(strings.ReplaceAll(f.Path, "/", `\`))
	path = strings.TrimPrefix(path, `\`)
	share := strings.ToUpper(f.Share)
	if f.Op == "write" && isTasksFolder(share, path) {
		d.taskFile(f)
	}
	p := d.pairs[pairKey{f.Client, f.Server}]
	if p == nil {
		return
	}
	p.last = f.Time
	// AtExec writes its output to %windir%\Temp\<task>.tmp: ADMIN$\Temp\...
	// or C$\Windows\Temp\....
	var rel string
	switch {
	case share == "ADMIN$" && strings.HasPrefix(path, `temp\`):
		rel = path[len(`temp\`):]
	case share == "C$" && strings.HasPrefix(path, `windows\temp\`):
		rel = path[len(`windows\temp\`):]
	default:
		return
	}
	if strings.ContainsRune(rel, '\\') {
		return
	}
	isTmp := strings.HasSuffix(rel, ".tmp")
	stem := strings.TrimSuffix(rel, ".tmp")
	for i := len(p.chains) - 1; i >= 0; i-- {
		ch := p.chains[i]
		if !ch.ran {
			continue
		}
		switch {
		case ch.outName != "":
			// The action's own redirection names the file.
			if !strings.EqualFold(ch.outName, rel) {
				continue
			}
		case !isTmp:
			continue
		case ch.name != "" && !strings.EqualFold(ch.name, stem):
			continue
		}
		if ch.outputFile != "" && !strings.EqualFold(ch.outputFile, f.Path) {
			continue
		}
		ch.outputFile = f.Path
		ch.last = f.Time
		switch f.Op {
		case "read":
			ch.outputRead = true
			ch.outputBytes += f.Bytes
		case "delete":
			ch.outputDeleted = true
		}
		ch.fileEvents = append(ch.fileEvents, f)
		d.maybeComplete(ch)
		return
	}
}

func isTasksFolder(share, path string) bool {
	switch share {
	case "ADMIN$":
		return strings.HasPrefix(path, `tasks\`) || strings.HasPrefix(path, `system32\tasks\`)
	case "C$":
		return strings.HasPrefix(path, `windows\tasks\`) || strings.HasPrefix(path, `windows\system32\tasks\`)
	}
	return false
}

func (d *Detector) taskFile(f *FileOp) {
	def := ruleBook(RuleTaskFile)
	src, dst, nw := endpoints(f.Endpoints)
	sev := def.severity
	reason := "file written into a Tasks folder; no task registration was seen with it"
	if strings.HasSuffix(strings.ToLower(f.Path), ".job") {
		sev = SeverityMedium
		reason = "legacy .job file written into the Tasks folder: the Task Scheduler loads it as a task"
	}
	ev := &Event{
		Timestamp: rfc3339(f.Time),
		Event: EventMeta{Kind: "alert", ID: eventID("alert:"+RuleTaskFile, FileKey(f), f.Dup),
			Category: []string{"intrusion_detection", "file"}, Type: []string{"info"}, Severity: sev,
			Dataset: "tschsensor.alert", Reason: reason},
		Observer:    Observer{Name: d.opt.Observer, Type: "sensor", Product: "tschsensor"},
		Source:      src,
		Destination: dst,
		Network:     nw,
		User:        userFields(f.User),
		Rule:        &Rule{ID: RuleTaskFile, Name: def.name, Description: def.description, Ruleset: "tschsensor"},
		Threat:      &Threat{Framework: "MITRE ATT&CK", Technique: def.technique, Tactic: def.tactic},
		SMB:         smbFields(&f.SMB),
		File:        fileFields(f),
	}
	if f.PcapFile != "" {
		ev.Pcap = &Pcap{File: f.PcapFile, Frames: f.Frames}
	}
	d.stats.Alerts++
	d.emit(ev)
}

func fileFields(f *FileOp) *FileFields {
	p := strings.ReplaceAll(f.Path, "/", `\`)
	ff := &FileFields{Path: p, Share: f.Share, Name: p}
	if i := strings.LastIndexByte(p, '\\'); i >= 0 {
		ff.Directory, ff.Name = p[:i], p[i+1:]
	}
	return ff
}

// alert emits a rule's alert built on the call c and its event ev.
func (d *Detector) alert(id string, c *Call, ev *Event, related []string, why []string) {
	d.publish(d.newAlert(id, c, ev, related, why))
}

func (d *Detector) publish(a *Event) {
	d.stats.Alerts++
	d.emit(a)
}

// newAlert builds a rule's alert on the call c and its event ev.
func (d *Detector) newAlert(id string, c *Call, ev *Event, related []string, why []string) *Event {
	def := ruleBook(id)
	sev := def.severity
	if len(why) > 0 && sev < SeverityHigh {
		sev = SeverityHigh
	}
	if len(why) >= 3 && sev < SeverityCritical {
		sev = SeverityCritical
	}
	a := &Event{
		Timestamp: ev.Timestamp,
		Event: EventMeta{Kind: "alert", ID: eventID("alert:"+id, CallKey(c), c.Dup),
			Category: []string{"intrusion_detection"}, Type: []string{"info"}, Action: ev.Event.Action,
			Outcome: ev.Event.Outcome, Severity: sev, Dataset: "tschsensor.alert", Reason: strings.Join(why, "; ")},
		Observer:    ev.Observer,
		Source:      ev.Source,
		Destination: ev.Destination,
		Network:     ev.Network,
		User:        ev.User,
		Rule:        &Rule{ID: id, Name: def.name, Description: def.description, Ruleset: "tschsensor", Reference: def.technique.Reference},
		Threat:      &Threat{Framework: "MITRE ATT&CK", Technique: def.technique, Tactic: def.tactic},
		SMB:         ev.SMB,
		DCERPC:      ev.DCERPC,
		Tsch:        ev.Tsch,
		Related:     &Related{Events: related, IP: []string{ev.Source.IP, ev.Destination.IP}},
		Pcap:        ev.Pcap,
	}
	if ev.User != nil && ev.User.Name != "" {
		a.Related.User = []string{ev.User.Name}
	}
	if id == RuleTaskRegistered && c.Tsch != nil && c.Tsch.Register != nil {
		switch {
		case c.Tsch.Register.Flags&0x4 != 0 && c.Tsch.Register.Flags&0x2 == 0:
			a.Event.Type = []string{"change"}
		case c.Tsch.Register.Flags&0x2 != 0:
			a.Event.Type = []string{"creation"}
		}
	}
	return a
}

// maybeComplete raises the AtExec alert at the step that completes the
// chain: the task run and deleted and, when the action writes output to be
// read back, that output read and deleted. Partial chains wait for their
// window's end (advance) or the end of the input (Flush).
func (d *Detector) maybeComplete(ch *chain) {
	if ch.raised || !ch.ran || !ch.delete {
		return
	}
	if ch.expectOutput && !(ch.outputRead && ch.outputDeleted) {
		return
	}
	d.closeChain(ch)
}

// closeChain raises the AtExec alert when the chain is complete enough:
// registration over \pipe\atsvc, an on-demand run, and then the task deleted
// or its output read back.
func (d *Detector) closeChain(ch *chain) {
	if ch.raised || !ch.ran || !(ch.delete || ch.outputRead) {
		return
	}
	ch.raised = true
	var why []string
	why = append(why, "registered over \\pipe\\atsvc", "run on demand")
	if ch.polled {
		why = append(why, "last run info polled")
	}
	if ch.delete {
		why = append(why, "deleted right after")
	}
	if ch.outputRead {
		why = append(why, "output file "+ch.outputFile+" read back over SMB")
	}
	if ch.outputDeleted {
		why = append(why, "output file deleted")
	}
	if ch.sealed {
		why = append(why, "stubs sealed: matched on operations and file names")
	}
	c := ch.register
	ev := CallEvent(c, d.opt.Observer)
	a := d.newAlert(RuleAtExec, c, ev, ch.events, nil)
	a.Event.Reason = strings.Join(why, "; ")
	a.Event.End = rfc3339(ch.last)
	if ch.outputFile != "" {
		ff := fileFields(ch.fileEvents[0])
		ff.BytesRead = ch.outputBytes
		ff.Deleted = ch.outputDeleted
		a.File = ff
	}
	a.AtExec = &AtExecFields{OutputRead: ch.outputRead, OutputFile: ch.outputFile, TaskDeleted: ch.delete, Polled: ch.polled, Sealed: ch.sealed}
	d.publish(a)
}

func (d *Detector) finishPair(p *pairState) {
	for _, c := range p.chains {
		d.closeChain(c)
	}
	p.chains = nil
}

// Flush closes every open chain; call it when the input ends.
func (d *Detector) Flush() {
	for _, k := range d.sortedPairs() {
		d.finishPair(d.pairs[k])
	}
	d.pairs = make(map[pairKey]*pairState)
}

// sortedPairs lists the pairs in a fixed order so that alerts closed together
// come out in the same order on every run.
func (d *Detector) sortedPairs() []pairKey {
	keys := make([]pairKey, 0, len(d.pairs))
	for k := range d.pairs {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].client != keys[j].client {
			return keys[i].client.Less(keys[j].client)
		}
		return keys[i].server.Less(keys[j].server)
	})
	return keys
}
