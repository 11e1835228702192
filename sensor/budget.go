package sensor

import (
	"unsafe"
)

// One memory budget bounds the whole sensor (Options.MemoryBudget, shared
// out per worker): the flow table, reassembly pages, connection objects,
// buffered SMB messages and DCE-RPC PDUs, call stubs, and calls the resolver
// holds. Fixed shares bound what has a natural unit (flows, pages, stubs,
// held calls); buffered messages take what is left and, under pressure, the
// oldest bulk buffer is given up first. New flows are always admitted: the
// flow table evicts half-open and idle entries to make room.

// DefaultMemoryBudget is the memory the sensor's state may use (all workers
// together, the resolver included). With the Go runtime, read buffers and
// garbage not yet collected the process stays under 512 MB.
const DefaultMemoryBudget = 384 << 20

// MemoryLimit is the Go runtime's soft memory limit that goes with a
// budget: state at its bound plus room for the runtime and the packet
// source, so that evicted buffers are collected before the heap doubles.
func MemoryLimit(budget int64) int64 {
	if budget <= 0 {
		budget = DefaultMemoryBudget
	}
	return budget + 64<<20
}

// Shares of a worker's budget.
const (
	flowShare = 8 // 1/8: the flow table
	pageShare = 8 // 1/8: out-of-order TCP data held by the reassembler
	stubShare = 4 // 1/4: call stubs in flight
	heldShare = 8 // 1/8 of the sensor's budget: calls the resolver holds
	pageCost  = 2048
	connCost  = 2048 // a reassembly connection, its conn and SMB/RPC state
	flowCost  = int64(unsafe.Sizeof(flowEntry{}))
	// Buffers this large are evicted oldest first. Small enough that what
	// stays unevictable (MaxConnections halves just under it) is a small
	// part of a worker's share: at 64 KiB, 10,000 connections each holding
	// most of a 65,000-byte DCE-RPC fragment (the largest there is) took
	// 650 MB that nothing could evict.
	bulkBuffer = 1 << 10
)

// Eviction reason of buffered data.
const evictBufferedMessage = "buffered_message"

// memBudget accounts one worker's share.
type memBudget struct {
	limit int64
	// msgs is the capacity of the buffers of message framers (halves).
	msgs int64
	// head and tail list the halves holding bulk buffers, oldest first.
	head, tail *half
	peak       int64
}

// flowsForBytes is the largest flow bound whose table fits in n bytes.
func flowsForBytes(n int64) int {
	slots := int64(flowMinSlots)
	for slots*2*flowCost <= n {
		slots *= 2
	}
	return int(slots / 4 * 3)
}

// memUsed is what the worker's state takes against its budget; reassembly
// pages count at their bound (gopacket does not say what it holds).
func (w *Worker) memUsed() int64 {
	return int64(len(w.flows.e))*flowCost + int64(w.opt.MaxPagesTotal)*pageCost + int64(w.active)*connCost +
		w.mem.msgs + int64(w.stubBytes)
}

func (w *Worker) notePeak() {
	if u := w.memUsed(); u > w.mem.peak {
		w.mem.peak = u
	}
}

// settle accounts a half's buffer after a delivery and evicts the oldest
// bulk buffers while the worker is over its budget.
func (w *Worker) settle(h *half) {
	c := int64(cap(h.buf))
	if d := c - h.charged; d != 0 {
		w.mem.msgs += d
		h.charged = c
	}
	if c >= bulkBuffer && !h.listed {
		w.mem.push(h)
	} else if c < bulkBuffer && h.listed {
		w.mem.unlink(h)
	}
	if u := w.memUsed(); u > w.mem.limit {
		// The peak is what was really held, eviction comes after.
		w.mem.peak = max(w.mem.peak, u)
		for x := w.mem.head; x != nil && w.memUsed() > w.mem.limit; {
			next := x.next
			if !x.busy {
				w.evictBuffer(x)
			}
			x = next
		}
	}
	w.notePeak()
}

// evictBuffer gives up what a half buffered: the rest of its message is
// skipped, as a message too large would be. A half between messages only
// gives up the capacity it kept for the next one: nothing is lost.
func (w *Worker) evictBuffer(h *half) {
	switch {
	case h.want == 0 && len(h.buf) == 0:
		h.buf = nil
	case h.want > 0:
		w.evictCount()
		h.skip = h.want - len(h.buf)
		h.buf, h.want, h.offered = nil, 0, false
	default:
		w.evictCount()
		h.buf = nil
		h.lost()
	}
	w.mem.msgs -= h.charged
	h.charged = 0
	w.mem.unlink(h)
}

func (w *Worker) evictCount() {
	w.stats.Evictions[evictBufferedMessage]++
	w.stats.anomaly("budget_message_evicted")
}

// release drops a half's account when its owner ends.
func (w *Worker) release(h *half) {
	w.mem.msgs -= h.charged
	h.charged = 0
	if h.listed {
		w.mem.unlink(h)
	}
}

func (m *memBudget) push(h *half) {
	h.listed = true
	h.prev, h.next = m.tail, nil
	if m.tail != nil {
		m.tail.next = h
	} else {
		m.head = h
	}
	m.tail = h
}

func (m *memBudget) unlink(h *half) {
	if h.prev != nil {
		h.prev.next = h.next
	} else {
		m.head = h.next
	}
	if h.next != nil {
		h.next.prev = h.prev
	} else {
		m.tail = h.prev
	}
	h.prev, h.next, h.listed = nil, nil, false
}

// MemStats is the memory budget's account of one worker (or a sum).
type MemStats struct {
	Budget int64 `json:"budget"` // the share
	Used   int64 `json:"used"`   // at the end of the run or the last snapshot
	Peak   int64 `json:"peak"`   // the most used
}

func (s *MemStats) merge(o *MemStats) {
	s.Budget += o.Budget
	s.Used += o.Used
	s.Peak += o.Peak
}

// budgetSplit is how a sensor's memory budget is shared out.
type budgetSplit struct {
	total     int64 // what the user set (or the default)
	perWorker int64
	held      int64 // the resolver's, for held calls
}

// splitBudget shares a sensor's memory budget out: the resolver's share for
// held calls, and an equal part of the rest for each worker.
func splitBudget(total int64, workers int) budgetSplit {
	if total <= 0 {
		total = DefaultMemoryBudget
	}
	held := total / heldShare
	return budgetSplit{total: total, perWorker: (total - held) / int64(max(workers, 1)), held: held}
}
