package detect

// The AtExec correlation: a task registered over \pipe\atsvc, run on demand,
// then deleted or its output read back over SMB, by one client on one
// server within the window. State is per (client, server) pair, bounded by
// Options.MaxPairs, and closed on capture time.

import (
	"fmt"
	"net/netip"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/tschsensor/tschsensor/dissect"
)

// taskRunUseSessionID is SchRpcRun's TASK_RUN_USE_SESSION_ID flag (MS-TSCH
// 3.2.5.4.13): run the task in the given terminal server session.
const taskRunUseSessionID = 0x4

// atExec is the stateful AtExec rule. Its methods keep the receiver name d
// of the detector they came from.
type atExec struct {
	*Alerts
	opt   Options
	pairs map[pairKey]*pairState
	now   time.Time
	swept time.Time
}

func newAtExec(a *Alerts, opt Options) *atExec {
	return &atExec{Alerts: a, opt: opt, pairs: make(map[pairKey]*pairState)}
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
	// loggedOff: the SMB session that carried the registration ended
	// before any output was read: no output will come on it.
	loggedOff bool
	// runSession is SchRpcRun's session id when the run asked for one
	// (TASK_RUN_USE_SESSION_ID: atexec -session-id), 0 otherwise.
	runSession uint32
}

type pairState struct {
	last   time.Time
	chains []*chain
}

func (d *atExec) pair(ep Endpoints) *pairState {
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

func (d *atExec) evictOldest() {
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

// Advance moves capture time forward and closes chains past the window.
func (d *atExec) Advance(_ *Alerts, t time.Time) {
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

// Call follows the calls of a chain; a run or a delete outside any chain is
// an alert of its own.
func (d *atExec) Call(_ *Alerts, c *Call, ev *Event) {
	p := d.pair(c.Endpoints)
	p.last = c.Time
	if c.Iface == dissect.IfaceITaskSchedulerService {
		d.tschCall(p, c, ev, c.Op())
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

func (d *atExec) tschCall(p *pairState, c *Call, ev *Event, op dissect.Op) {
	switch op {
	case dissect.OpSchRpcRegisterTask:
		if c.Transport == TransportNamedPipe && c.SMB != nil && strings.EqualFold(strings.TrimLeft(c.SMB.Pipe, `\`), "atsvc") {
			ch := &chain{start: c.Time, last: c.Time, register: c,
				events: []string{ev.Event.ID}, name: taskName(taskPath(c)), outName: outputFile(c), sealed: c.Encrypted && !c.Decrypted}
			ch.expectOutput = ch.outName != "" || c.Tsch == nil || c.Tsch.Task == nil
			p.chains = append(p.chains, ch)
		}
	case dissect.OpSchRpcRun, dissect.OpSchRpcGetLastRunInfo, dissect.OpSchRpcDelete:
		if ch := p.match(c); ch != nil {
			ch.last = c.Time
			ch.events = append(ch.events, ev.Event.ID)
			switch op {
			case dissect.OpSchRpcRun:
				ch.ran = true
				if c.Tsch != nil && c.Tsch.Run != nil && c.Tsch.Run.Flags&taskRunUseSessionID != 0 {
					ch.runSession = c.Tsch.Run.SessionID
				}
			case dissect.OpSchRpcGetLastRunInfo:
				ch.polled = true
			case dissect.OpSchRpcDelete:
				ch.delete = true
			}
			d.maybeComplete(ch)
		} else if op == dissect.OpSchRpcRun {
			d.alert(RuleTaskRun, c, ev, []string{ev.Event.ID}, nil)
		} else if op == dissect.OpSchRpcDelete {
			d.alert(RuleTaskDeleted, c, ev, []string{ev.Event.ID}, nil)
		}
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

// File links the output file of a chain's task, read back over SMB.
func (d *atExec) File(_ *Alerts, f *FileOp) {
	path, share := sharePath(f)
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

// logoff closes the chains registered on the SMB session that ended: atexec
// reads its output back on the session it registered the task on, before it
// logs off, so a chain run and deleted that is still waiting for its output
// (-silentcommand and -session-id write none; sealed stubs hide the action)
// is complete now rather than when its window ends.
func (d *atExec) logoff(f *FileOp) {
	p := d.pairs[pairKey{f.Client, f.Server}]
	if p == nil {
		return
	}
	for _, ch := range p.chains {
		r := ch.register
		if ch.raised || !ch.ran || !ch.delete || r.SMB == nil || r.SMB.SessionID != f.SMB.SessionID ||
			r.ClientPort != f.ClientPort || r.ServerPort != f.ServerPort {
			continue
		}
		ch.loggedOff = !ch.outputRead
		d.closeChain(ch)
	}
}

// maybeComplete raises the AtExec alert at the step that completes the
// chain: the task run and deleted and, when the action writes output to be
// read back, that output read and deleted. Partial chains wait for their
// window's end (advance) or the end of the input (Flush).
func (d *atExec) maybeComplete(ch *chain) {
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
func (d *atExec) closeChain(ch *chain) {
	if ch.raised || !ch.ran || !(ch.delete || ch.outputRead) {
		return
	}
	ch.raised = true
	var why []string
	why = append(why, "registered over \\pipe\\atsvc", "run on demand")
	if ch.runSession != 0 {
		why = append(why, fmt.Sprintf("in session %d (TASK_RUN_USE_SESSION_ID)", ch.runSession))
	}
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
	if ch.loggedOff {
		why = append(why, "SMB session logged off without reading output")
	}
	if ch.sealed {
		if ch.outputFile != "" {
			why = append(why, "stubs sealed: matched on operations and file names")
		} else {
			why = append(why, "stubs sealed: matched on operations")
		}
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

func (d *atExec) finishPair(p *pairState) {
	for _, c := range p.chains {
		d.closeChain(c)
	}
	p.chains = nil
}

// Flush closes every open chain; call it when the input ends.
func (d *atExec) Flush(_ *Alerts) {
	for _, k := range d.sortedPairs() {
		d.finishPair(d.pairs[k])
	}
	d.pairs = make(map[pairKey]*pairState)
}

// sortedPairs lists the pairs in a fixed order so that alerts closed together
// come out in the same order on every run.
func (d *atExec) sortedPairs() []pairKey {
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
