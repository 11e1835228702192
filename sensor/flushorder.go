package sensor

import (
	"net/netip"
	"sort"
	"time"

	"github.com/tschsensor/tschsensor/detect"
)

// The reassembler ends connections (idle or at the end of the input) in the
// order of its internal map, which changes from run to run. Records that a
// flush produces are therefore collected and handed on in an order that
// depends only on the traffic: time, then endpoints, then creation order.

type flushItem struct {
	call *detect.Call
	file *detect.FileOp
}

func (it flushItem) key() (time.Time, detect.Endpoints, uint64) {
	if it.call != nil {
		return it.call.Time, it.call.Endpoints, it.call.Seq
	}
	return it.file.Time, it.file.Endpoints, it.file.Seq
}

// flushBuffer is the worker's Recorder: it passes records through, except
// while a flush is under way.
type flushBuffer struct {
	next  Recorder
	on    bool
	items []flushItem
}

func (b *flushBuffer) Call(c *detect.Call) {
	if b.on {
		b.items = append(b.items, flushItem{call: c})
		return
	}
	b.next.Call(c)
}

func (b *flushBuffer) File(f *detect.FileOp) {
	if b.on {
		b.items = append(b.items, flushItem{file: f})
		return
	}
	b.next.File(f)
}

// hold starts collecting; release hands the collected records on in order.
func (b *flushBuffer) hold() { b.on = true }

func (b *flushBuffer) release() {
	b.on = false
	if len(b.items) == 0 {
		return
	}
	b.items = emitFlushItems(b.next, b.items)
}

// emitFlushItems hands items to next in flush order and returns the emptied
// slice for reuse.
func emitFlushItems(next Recorder, items []flushItem) []flushItem {
	sortFlushItems(items)
	for _, it := range items {
		if it.call != nil {
			next.Call(it.call)
		} else {
			next.File(it.file)
		}
	}
	clear(items)
	return items[:0]
}

// sortFlushItems orders the records of one flush: time, endpoints, then
// creation order.
func sortFlushItems(items []flushItem) {
	sort.SliceStable(items, func(i, j int) bool {
		ti, ei, si := items[i].key()
		tj, ej, sj := items[j].key()
		if !ti.Equal(tj) {
			return ti.Before(tj)
		}
		if c := compareEndpoints(ei, ej); c != 0 {
			return c < 0
		}
		return si < sj
	})
}

func compareEndpoints(a, b detect.Endpoints) int {
	if c := a.Client.Compare(b.Client); c != 0 {
		return c
	}
	if c := a.Server.Compare(b.Server); c != 0 {
		return c
	}
	if a.ClientPort != b.ClientPort {
		return int(a.ClientPort) - int(b.ClientPort)
	}
	return int(a.ServerPort) - int(b.ServerPort)
}

// epmFlushBuffer keeps the EPMRecorder capability of the recorder behind
// the buffer; endpoint-mapper answers pass at once (learning early is
// harmless, and held calls are released in their own order).
type epmFlushBuffer struct {
	*flushBuffer
	epm EPMRecorder
}

func (b epmFlushBuffer) EPM(server netip.Addr, port uint16, uuid string, t time.Time) {
	b.epm.EPM(server, port, uuid, t)
}
