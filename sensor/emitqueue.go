package sensor

import (
	"sync/atomic"

	"github.com/tschsensor/tschsensor/detect"
	"github.com/tschsensor/tschsensor/sensor/output"
)

// emitBatch and emitBatches bound the output stage: at most
// emitBatches batches of emitBatch events wait between the detector and
// the encoder, so a slow sink holds the detector up instead of growing a
// queue.
const (
	emitBatch   = 256
	emitBatches = 4
)

// emitQueue is the output stage of replay and live: the detector hands it
// the events it builds, in order, and a goroutine of its own encodes them
// and writes them to the sinks (Output.Emit), so that building events and
// encoding them overlap on two cores, above all when many come at once (a
// burst of calls, the orderer handing on what it held). Output.Emit sees
// the same events in the same order as when the detector called it
// directly. An event is not changed once emitted (rules only read it), so
// the encoder may read it while the detector goes on. Live hands on a
// batch as soon as it has nothing else to do (flush), so an event waits for
// no others.
type emitQueue struct {
	out  *output.Output
	b    []*detect.Event
	full chan []*detect.Event
	free chan []*detect.Event
	done chan struct{}
	// panics counts events whose encoding panicked (a bug), reported as
	// AnomalyPanic; hook sees what the panic carried.
	panics atomic.Uint64
	hook   func(any)
	// written, when set, runs on the output goroutine after each batch.
	written func()
}

func newEmitQueue(out *output.Output, hook func(any)) *emitQueue {
	q := &emitQueue{
		out:  out,
		b:    make([]*detect.Event, 0, emitBatch),
		full: make(chan []*detect.Event, emitBatches),
		free: make(chan []*detect.Event, emitBatches),
		done: make(chan struct{}),
		hook: hook,
	}
	for range emitBatches - 1 {
		q.free <- make([]*detect.Event, 0, emitBatch)
	}
	go q.run()
	return q
}

// Emit queues ev; a full batch goes to the encoder.
func (q *emitQueue) Emit(ev *detect.Event) {
	q.b = append(q.b, ev)
	if len(q.b) >= emitBatch {
		q.full <- q.b
		q.b = <-q.free
	}
}

// flush hands on the events queued so far without waiting for a full
// batch; it waits only when every batch is in flight (a slow sink holds
// the detector up).
func (q *emitQueue) flush() {
	if len(q.b) == 0 {
		return
	}
	q.full <- q.b
	q.b = <-q.free
}

// close hands on what is queued and returns once every event is written
// to the sinks (not closed: the caller closes the Output).
func (q *emitQueue) close() {
	if len(q.b) > 0 {
		q.full <- q.b
	}
	q.b = nil
	close(q.full)
	<-q.done
}

func (q *emitQueue) run() {
	defer close(q.done)
	for b := range q.full {
		for i, ev := range b {
			q.emit(ev)
			b[i] = nil
		}
		if q.written != nil {
			q.written()
		}
		q.free <- b[:0]
	}
}

func (q *emitQueue) emit(ev *detect.Event) {
	defer func() {
		if r := recover(); r != nil {
			q.panics.Add(1)
			if q.hook != nil {
				q.hook(r)
			}
		}
	}()
	q.out.Emit(ev)
}
