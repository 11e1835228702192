package sensor

import (
	"io"
	"net/netip"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/tschsensor/tschsensor/detect"
	"github.com/tschsensor/tschsensor/sensor/output"
	"github.com/tschsensor/tschsensor/sensor/source"
)

// The pipeline is the same for replay and live capture:
//
//	source → workers → resolver → detector → output (sinks)
//
// The front half is one loop, pump, from a packetSource to a packetSink.
// Replay's sources are capture files and its sink one worker or a
// dispatcher in front of several (see shard.go); live capture's sources are
// AF_PACKET rings, one per interface and worker (the kernel's fanout is the
// dispatcher), and its sink the worker. What follows the workers is the
// backend below, built the same way by both; the counters of a run are the
// workers' (every packet is counted there, whatever its source), put
// together in backend.stats, and the losses in Output.Delivery.

// packetSource is the front of the pipeline.
type packetSource interface {
	// next fills ps with the packets ready now, valid until the following
	// call. n is 0 when there is none: at the end of a file (end; err says
	// why, nil at a clean end) or while a ring is empty.
	next(ps []source.Packet) (n int, end bool, err error)
}

// packetSink is what a source's packets go to: one worker, or the
// dispatcher in front of several.
type packetSink interface {
	SetFile(name string)
	Packet(data []byte, ci gopacket.CaptureInfo, link layers.LinkType)
}

// pump hands about max packets (at least max, unless src ends or runs
// dry) from src to sink, reading them into buf: the loop every packet
// takes before a worker, in replay and live capture alike. It returns how
// many it handed on, and end (with err, nil at a clean end) once src has
// no more.
func pump(src packetSource, sink packetSink, buf []source.Packet, max int) (n int, end bool, err error) {
	for n < max {
		k, end, err := src.next(buf)
		if k == 0 {
			return n, end, err
		}
		for i := range buf[:k] {
			p := &buf[i]
			sink.Packet(p.Data, p.CI, p.Link)
		}
		n += k
	}
	return n, false, nil
}

// fileSource is a capture file as a packetSource.
type fileSource struct{ f *source.FileSource }

func (s fileSource) next(ps []source.Packet) (int, bool, error) {
	n, err := s.f.ReadBatch(ps)
	if err != nil {
		if err == io.EOF {
			err = nil
		}
		return 0, true, err
	}
	return n, false, nil
}

// ringPackets is an AF_PACKET ring (or a test's stand-in) as a
// packetSource: one packet at a time, since a ring's packet is valid only
// until the next; it never ends, it is only empty for a while.
type ringPackets struct {
	r    ringSource
	link layers.LinkType
}

func (s ringPackets) next(ps []source.Packet) (int, bool, error) {
	data, ci, ok := s.r.Next()
	if !ok {
		return 0, false, nil
	}
	ps[0] = source.Packet{Data: data, CI: ci, Link: s.link}
	return 1, false, nil
}

// backend is the part of the pipeline after the workers: the resolver, the
// capture-time orderer, the detector, the output. It is used from one
// goroutine.
type backend struct {
	res *Resolver
	ord *orderer
	det *detect.Detector
	out *output.Output
	// budget is the memory budget as Replay or Live shared it out.
	budget budgetSplit
	// panics counts panics recovered on the back half's own goroutines
	// (replay's merger and output stage), reported as AnomalyPanic.
	panics uint64
}

func newBackend(opt Options, dopt detect.Options, out *output.Output) *backend {
	return newBackendEmit(opt, dopt, out, out.Emit)
}

// newBackendEmit is newBackend with the detector's events going to emit
// (replay's emitQueue) rather than straight to out.
func newBackendEmit(opt Options, dopt detect.Options, out *output.Output, emit func(*detect.Event)) *backend {
	det := detect.New(dopt, emit)
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
	if b.panics > 0 {
		s.Anomalies[AnomalyPanic] += b.panics
	}
	s.MemoryBudget, s.ResolverBudget = b.budget.total, b.budget.held
	s.RecordsLate = b.ord.Late
	return s
}

// ConfigError is a configuration that New refused before opening
// anything: a bad flag rather than a failure of the machine.
type ConfigError struct{ Err error }

func (e *ConfigError) Error() string { return e.Err.Error() }
func (e *ConfigError) Unwrap() error { return e.Err }
