package sensor

import (
	"net/netip"
	"time"

	"github.com/tschsensor/tschsensor/detect"
	"github.com/tschsensor/tschsensor/dissect"
)

// EPMRecorder is a Recorder that also takes what the endpoint mapper said.
// Workers learn mappings from the EPM connections they see, but a mid-stream
// connection to the mapped port may sit on another worker, which can finish
// its calls first; handing both to one place after the workers makes the
// naming independent of worker count and timing.
type EPMRecorder interface {
	Recorder
	EPM(server netip.Addr, port uint16, uuid string, t time.Time)
}

// Bounds of calls waiting for an endpoint-mapper answer: their number, and
// the stub bytes they keep (past it a held call keeps only its operation).
const (
	DefaultMaxHeld      = 4096
	DefaultMaxHeldBytes = 64 << 20
)

// Resolver sits between the workers and the detector: it passes records on,
// and holds calls whose interface only an endpoint-mapper answer can name
// until that answer comes (or the input ends). Use it from one goroutine.
type Resolver struct {
	next Recorder
	epm  *EPMTable
	held map[epmKey][]*detect.Call
	n    int
	max  int
	// bytes is what held stubs take against MaxHeldBytes.
	bytes int
	// malformedXML counts task XML needing repairs in calls named here.
	malformedXML uint64
	// Resolved counts calls named here; Dropped those never named.
	Resolved, Dropped uint64
	// Tsch bounds the decoding of the calls it names (as Options.Tsch).
	Tsch dissect.TschOptions
	// MaxHeldBytes bounds held stubs (default DefaultMaxHeldBytes; Replay
	// and Live give it its share of the memory budget).
	MaxHeldBytes int
}

// NewResolver returns a Resolver handing records to next.
func NewResolver(next Recorder) *Resolver {
	return &Resolver{next: next, epm: NewEPMTable(0, 0), held: make(map[epmKey][]*detect.Call), max: DefaultMaxHeld}
}

// Call passes c on, naming it first when it was unresolved.
func (r *Resolver) Call(c *detect.Call) {
	if !c.Unresolved {
		r.next.Call(c)
		return
	}
	if r.resolve(c) {
		return
	}
	if r.n >= r.max {
		r.Dropped++
		return
	}
	if c.Stubs != nil {
		limit := r.MaxHeldBytes
		if limit <= 0 {
			limit = DefaultMaxHeldBytes
		}
		if n := len(c.Stubs.Request) + len(c.Stubs.Response); r.bytes+n <= limit {
			r.bytes += n
		} else {
			c.Stubs = nil
			c.Truncated = true
		}
	}
	k := epmKey{c.Server.Unmap(), c.ServerPort}
	r.held[k] = append(r.held[k], c)
	r.n++
}

// File passes f on.
func (r *Resolver) File(f *detect.FileOp) { r.next.File(f) }

// EPM learns a mapping and releases the calls waiting for it.
func (r *Resolver) EPM(server netip.Addr, port uint16, uuid string, t time.Time) {
	r.epm.Learn(server, port, uuid, t)
	k := epmKey{server.Unmap(), port}
	calls := r.held[k]
	if len(calls) == 0 {
		return
	}
	delete(r.held, k)
	r.n -= len(calls)
	for _, c := range calls {
		if c.Stubs != nil {
			r.bytes -= len(c.Stubs.Request) + len(c.Stubs.Response)
		}
		if !r.resolve(c) {
			r.Dropped++
		}
	}
}

// resolve names, decodes and passes on c when the table knows its port.
func (r *Resolver) resolve(c *detect.Call) bool {
	iface, uuid, ok := r.epm.Lookup(c.Server, c.ServerPort, c.Time)
	if !ok || !iface.Decoded() || iface == dissect.IfaceEPM {
		return false
	}
	c.Iface, c.IfaceUUID, c.IfaceVersion, c.Unresolved = iface, uuid, "1.0", false
	r.Resolved++
	if c.Stubs != nil {
		decodeCall(r.Tsch, c, c.Stubs.Request, c.Stubs.Response, c.Stubs.DRep)
		c.Stubs = nil
		if xmlMalformed(c) {
			r.malformedXML++
		}
	}
	r.next.Call(c)
	return true
}

// Flush drops what was never named; the detector is flushed by its owner.
func (r *Resolver) Flush() {
	r.Dropped += uint64(r.n)
	r.held = make(map[epmKey][]*detect.Call)
	r.n, r.bytes = 0, 0
}

// account adds what the resolver did to a run's counters: calls it named are
// MS-TSCH calls the workers could not count, and calls never named an anomaly.
func (r *Resolver) account(s *Stats) {
	s.TschCalls += r.Resolved
	if r.Dropped > 0 {
		s.Anomalies["dcerpc_call_unknown_context"] += r.Dropped
	}
	if r.malformedXML > 0 {
		s.Anomalies["tsch_task_xml_malformed"] += r.malformedXML
	}
}
