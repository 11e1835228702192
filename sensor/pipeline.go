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
	// next returns the next packet ready now, valid until the following
	// call. ok is false when there is none: at the end of a file (end;
	// err says why, nil at a clean end) or while a ring is empty.
	next() (data []byte, ci gopacket.CaptureInfo, link layers.LinkType, ok, end bool, err error)
}

// packetSink is what a source's packets go to: one worker, or the
// dispatcher in front of several.
type packetSink interface {
	SetFile(name string)
	Packet(data []byte, ci gopacket.CaptureInfo, link layers.LinkType)
}

// pump hands up to max packets from src to sink: the loop every packet
// takes before a worker, in replay and live capture alike. It returns how
// many it handed on, and end (with err, nil at a clean end) once src has
// no more.
func pump(src packetSource, sink packetSink, max int) (n int, end bool, err error) {
	for n < max {
		data, ci, link, ok, end, err := src.next()
		if !ok {
			return n, end, err
		}
		sink.Packet(data, ci, link)
		n++
	}
	return n, false, nil
}

// fileSource is a capture file as a packetSource.
type fileSource struct{ f *source.FileSource }

func (s fileSource) next() ([]byte, gopacket.CaptureInfo, layers.LinkType, bool, bool, error) {
	data, ci, link, err := s.f.ReadPacket()
	if err != nil {
		if err == io.EOF {
			err = nil
		}
		return nil, ci, 0, false, true, err
	}
	return data, ci, link, true, false, nil
}

// ringPackets is an AF_PACKET ring (or a test's stand-in) as a
// packetSource: it never ends, it is only empty for a while.
type ringPackets struct {
	r    ringSource
	link layers.LinkType
}

func (s ringPackets) next() ([]byte, gopacket.CaptureInfo, layers.LinkType, bool, bool, error) {
	data, ci, ok := s.r.Next()
	return data, ci, s.link, ok, false, nil
}

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
