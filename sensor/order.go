package sensor

import (
	"container/heap"
	"time"

	"github.com/tschsensor/tschsensor/detect"
)

// Bounds of the reorder stage in front of the detector.
const (
	// DefaultReorderDelay is how far behind the slowest worker's capture
	// clock records are held before the detector sees them. Workers finish
	// records when their last packet arrives, so records of different
	// workers reach the detector out of capture-time order by about the
	// time a packet waits in a ring block; the delay covers that with a
	// wide margin, and bounds how late a live alert is.
	DefaultReorderDelay = time.Second
	// DefaultMaxReorder bounds the records held; past it the oldest goes
	// on at once. Records arrive nearly in order, so this only matters in
	// a burst of records (a flood of calls that are each reported): held
	// records cost about 2 KB each with their events to come, and a burst
	// held whole would be built and written only after the delay, on one
	// core, instead of while the worker decodes. 8,192 is far above the
	// task traffic of any network in one second.
	DefaultMaxReorder = 1 << 13
)

// orderer hands records to the detector in capture-time order (the time a
// record was finished: its response, else its request), ties broken by
// connection and creation order. Records are held until the watermark —
// the capture time every worker has reached — is DefaultReorderDelay past
// them, so that the order, and with it the correlation, depends on the
// traffic only, not on the number of workers or their timing. A record
// arriving after later ones went on (finished by an idle or end-of-input
// flush) goes on at once and is counted. Use it from one goroutine.
type orderer struct {
	next  Recorder
	delay time.Duration
	max   int
	h     orderHeap
	// run holds records that arrived in order (each not before the one
	// ahead of it, the common case with one worker), oldest first: they
	// cost no heap operations. The next record to go is the earlier of
	// run's head and the heap's top, so the order is the heap's alone.
	run  []orderItem
	head int
	n    uint64 // arrival order, the last tie-break
	last time.Time
	// due is when the record numbered dueN, the one going next when
	// Release last looked, is released.
	dueN uint64
	due  time.Time
	// Late counts records that came after later ones had gone on.
	Late uint64
}

func newOrderer(next Recorder) *orderer {
	return &orderer{next: next, delay: DefaultReorderDelay, max: DefaultMaxReorder}
}

type orderItem struct {
	t    time.Time
	ep   detect.Endpoints
	seq  uint64
	n    uint64
	call *detect.Call
	file *detect.FileOp
}

type orderHeap []orderItem

func (h orderHeap) Len() int           { return len(h) }
func (h orderHeap) Less(i, j int) bool { return itemLess(&h[i], &h[j]) }

func itemLess(a, b *orderItem) bool {
	if !a.t.Equal(b.t) {
		return a.t.Before(b.t)
	}
	if c := compareEndpoints(a.ep, b.ep); c != 0 {
		return c < 0
	}
	if a.seq != b.seq {
		return a.seq < b.seq
	}
	return a.n < b.n
}
func (h orderHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *orderHeap) Push(x any)   { *h = append(*h, x.(orderItem)) }
func (h *orderHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	old[len(old)-1] = orderItem{}
	*h = old[:len(old)-1]
	return it
}

func callEnd(c *detect.Call) time.Time {
	if c.Flood != nil {
		return c.Flood.Last
	}
	if c.Responded && c.ResponseTime.After(c.Time) {
		return c.ResponseTime
	}
	return c.Time
}

func (o *orderer) Call(c *detect.Call) {
	o.push(orderItem{t: callEnd(c), ep: c.Endpoints, seq: c.Seq, call: c})
}

func (o *orderer) File(f *detect.FileOp) {
	o.push(orderItem{t: f.Time, ep: f.Endpoints, seq: f.Seq, file: f})
}

func (o *orderer) push(it orderItem) {
	if !o.last.IsZero() && it.t.Before(o.last) {
		o.Late++
		o.pass(it)
		return
	}
	o.n++
	it.n = o.n
	if o.head == len(o.run) || !itemLess(&it, &o.run[len(o.run)-1]) {
		if o.head > 0 && o.head == len(o.run) {
			o.run, o.head = o.run[:0], 0
		} else if o.head > 0 && len(o.run) == cap(o.run) && o.head >= len(o.run)/2 {
			// Slide the live part down rather than grow.
			o.run = o.run[:copy(o.run, o.run[o.head:])]
			clear(o.run[len(o.run):cap(o.run)])
			o.head = 0
		}
		o.run = append(o.run, it)
	} else {
		heap.Push(&o.h, it)
	}
	if o.held() > o.max {
		o.pop()
	}
}

func (o *orderer) held() int { return len(o.h) + len(o.run) - o.head }

// fromRun says whether the next record is run's head rather than the
// heap's top; held() must be positive.
func (o *orderer) fromRun() bool {
	return o.head < len(o.run) && (len(o.h) == 0 || itemLess(&o.run[o.head], &o.h[0]))
}

// first is the record that goes next; held() must be positive.
func (o *orderer) first() *orderItem {
	if o.fromRun() {
		return &o.run[o.head]
	}
	return &o.h[0]
}

func (o *orderer) pop() {
	var it orderItem
	if o.fromRun() {
		it = o.run[o.head]
		o.run[o.head] = orderItem{}
		o.head++
	} else {
		it = heap.Pop(&o.h).(orderItem)
	}
	if it.t.After(o.last) {
		o.last = it.t
	}
	o.pass(it)
}

func (o *orderer) pass(it orderItem) {
	if it.call != nil {
		o.next.Call(it.call)
	} else {
		o.next.File(it.file)
	}
}

// Release hands on every record finished at least the reorder delay
// before watermark, the capture time all workers have reached.
func (o *orderer) Release(watermark time.Time) {
	// Called once per packet: while the same record waits first, one
	// comparison with its release time, no time arithmetic.
	for o.held() > 0 {
		if f := o.first(); f.n != o.dueN {
			o.dueN, o.due = f.n, f.t.Add(o.delay)
		}
		if watermark.Before(o.due) {
			return
		}
		o.pop()
	}
}

// Flush hands on everything held.
func (o *orderer) Flush() {
	for o.held() > 0 {
		o.pop()
	}
}
