package output

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"github.com/tschsensor/tschsensor/detect"
)

// WriterSink writes records as JSON lines.
type WriterSink struct {
	mu sync.Mutex
	w  *bufio.Writer
	// flushEach makes every line reach the writer at once (live capture).
	flushEach bool
}

// NewWriterSink returns a sink writing JSON lines to w.
func NewWriterSink(w io.Writer, flushEach bool) *WriterSink {
	return &WriterSink{w: bufio.NewWriterSize(w, 64<<10), flushEach: flushEach}
}

// Publish writes one line.
func (s *WriterSink) Publish(rec Record) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.w.Write(rec.JSON); err != nil {
		return fmt.Errorf("write event: %w", err)
	}
	if err := s.w.WriteByte('\n'); err != nil {
		return fmt.Errorf("write event: %w", err)
	}
	if s.flushEach {
		return s.w.Flush()
	}
	return nil
}

// Close flushes buffered lines.
func (s *WriterSink) Close(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Flush()
}

// maxKeptBuffer bounds the encoding buffer kept between records.
const maxKeptBuffer = 256 << 10

// Output encodes events and fans them out to sinks. It is the one place
// that counts what was lost (Delivery): what it could not encode, what a
// sink refused, what the live detector queue dropped, and what a sink lost
// on its own (the NATS spool), so that nothing is lost silently.
type Output struct {
	sinks   []Sink
	Events  uint64
	Alerts  uint64
	Metrics uint64
	drops   outputDrops
	errs    []error
	// buf is reused for every record: sinks copy what they keep (Record).
	buf []byte
	// subjects holds the subjects made so far, so that a record whose
	// subject was seen before costs no allocation for it.
	subjects map[string]string
	subject  []byte
}

// NewOutput returns an Output over sinks.
func NewOutput(sinks ...Sink) *Output { return &Output{sinks: sinks} }

// Emit encodes ev and publishes it to every sink.
func (o *Output) Emit(ev *detect.Event) {
	b, err := ev.AppendJSON(o.buf[:0])
	o.buf = b[:0]
	if cap(b) > maxKeptBuffer {
		o.buf = nil // one huge task XML does not pin its buffer for the run
	}
	if err != nil {
		o.drops.encode.Add(1)
		o.note(fmt.Errorf("encode event %s: %w", ev.Event.ID, err))
		return
	}
	switch ev.Event.Kind {
	case "alert":
		o.Alerts++
	case "metric":
		o.Metrics++
	default:
		o.Events++
	}
	rec := Record{Kind: ev.Event.Kind, Subject: o.subjectOf(ev), ID: ev.Event.ID, JSON: b}
	for _, s := range o.sinks {
		if err := s.Publish(rec); err != nil {
			o.drops.sink.Add(1)
			o.note(err)
		}
	}
}

// maxSubjects bounds Output.subjects; past it the map starts again.
const maxSubjects = 1024

func (o *Output) subjectOf(ev *detect.Event) string {
	o.subject = ev.AppendSubject(o.subject[:0])
	if s, ok := o.subjects[string(o.subject)]; ok {
		return s
	}
	s := string(o.subject)
	if o.subjects == nil || len(o.subjects) >= maxSubjects {
		o.subjects = make(map[string]string)
	}
	o.subjects[s] = s
	return s
}

// Delivery sums what the sinks delivered and every record lost so far. It
// is safe from any goroutine.
func (o *Output) Delivery() Delivery {
	d := Delivery{Dropped: Drops{Queue: o.drops.queue.Load(), Encode: o.drops.encode.Load(), Sink: o.drops.sink.Load()}}
	for _, s := range o.sinks {
		ds, ok := s.(DeliverySink)
		if !ok {
			continue
		}
		sd := ds.Delivery()
		d.Published += sd.Published
		d.Acked += sd.Acked
		d.Spooled += sd.Spooled
		d.Resent += sd.Resent
		d.SpoolRecords += sd.SpoolRecords
		d.Dropped.Spool += sd.Dropped
		d.Dropped.Shutdown += sd.DroppedAtClose
		c := sd.Connected
		if d.NATSConnected != nil {
			c = c && *d.NATSConnected
		}
		d.NATSConnected = &c
	}
	d.DroppedTotal = d.Dropped.Total()
	return d
}

// QueueDrops is the counter of records the live detector queue dropped:
// the workers add to it where a drop happens, Delivery reads it.
func (o *Output) QueueDrops() *atomic.Uint64 { return &o.drops.queue }

// Dropped is Delivery().DroppedTotal.
func (o *Output) Dropped() uint64 { return o.Delivery().DroppedTotal }

func (o *Output) note(err error) {
	if len(o.errs) < 16 {
		o.errs = append(o.errs, err)
	}
}

// Errors returns the first errors sinks reported.
func (o *Output) Errors() []error { return o.errs }

// Close closes every sink.
func (o *Output) Close(ctx context.Context) error {
	var first error
	for _, s := range o.sinks {
		if err := s.Close(ctx); err != nil && first == nil {
			first = err
		}
	}
	return first
}
