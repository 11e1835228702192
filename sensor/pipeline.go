package sensor

import (
	"net/netip"
	"time"

	"github.com/tschsensor/tschsensor/detect"
	"github.com/tschsensor/tschsensor/sensor/output"
)

// The pipeline is the same for replay and live capture:
//
//	source → workers → resolver → detector → output (sinks)
//
// Replay reads files (one worker, or a dispatcher in front of several, see
// shard.go); live capture reads AF_PACKET rings, one worker per fanout
// share. What follows the workers is the backend below, built the same way
// by both; the counters of a run are put together in backend.stats, the
// losses in Output.Delivery.

// backend is the part of the pipeline after the workers: the resolver, the
// capture-time orderer, the detector, the output. It is used from one
// goroutine.
type backend struct {
	res *Resolver
	ord *orderer
	det *detect.Detector
	out *output.Output
}

func newBackend(opt Options, dopt detect.Options, out *output.Output) *backend {
	det := detect.New(dopt, out.Emit)
	ord := newOrderer(directRecorder{det})
	res := NewResolver(ord)
	res.Tsch = opt.Tsch
	return &backend{res: res, ord: ord, det: det, out: out}
}

func (b *backend) Call(c *detect.Call)   { b.res.Call(c) }
func (b *backend) File(f *detect.FileOp) { b.res.File(f) }
func (b *backend) EPM(server netip.Addr, port uint16, uuid string, t time.Time) {
	b.res.EPM(server, port, uuid, t)
}

// flush ends the run: calls still waiting for an endpoint-mapper answer
// are given up, the orderer hands on what it holds, the detector reports
// what it holds.
func (b *backend) flush() {
	b.res.Flush()
	b.ord.Flush()
	b.det.Flush()
}

// stats puts a run's counters together: the workers', and what the
// resolver and the orderer did. What was lost on the way to the sinks is
// the output's to count (Output.Delivery).
func (b *backend) stats(workers []*Stats) Stats {
	s := newStats()
	for _, w := range workers {
		s.Merge(w)
	}
	b.res.account(&s)
	s.RecordsLate = b.ord.Late
	return s
}

// ConfigError is a configuration that New refused before opening
// anything: a bad flag rather than a failure of the machine.
type ConfigError struct{ Err error }

func (e *ConfigError) Error() string { return e.Err.Error() }
func (e *ConfigError) Unwrap() error { return e.Err }
