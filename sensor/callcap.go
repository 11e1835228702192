package sensor

// Calls in flight are bounded per channel (MaxCalls) and per worker
// (MaxCallsTotal): thousands of channels each holding just under MaxCalls
// unanswered requests took 1.1 GB for a million calls. Past the worker's
// bound a channel holding more than its fair share gives up its own oldest
// call (the per-channel path); one holding fewer gives up the worker's
// oldest call, so a channel with one call in flight (a registration
// awaiting its answer) loses it only to calls older than it.

const (
	// callCost is what a call in flight costs, its event included.
	callCost = 1024
	// callShare: calls in flight may take 1/8 of a worker's budget.
	callShare = 8
	// callFairShare is what a channel keeps under pressure.
	callFairShare = 8
	// Eviction reason of a call past MaxCallsTotal.
	evictCallInFlight = "call_in_flight"
)

// callRef names a call in flight by channel, id and sequence number, so
// that a call finished since is known stale and no stub stays alive.
type callRef struct {
	ch  *rpcChannel
	id  uint32
	seq uint64
}

// live returns the call a reference names if it is still in flight.
func (c *callRef) live() *rpcCall {
	rc := c.ch.calls[c.id]
	if rc == nil || rc.call.Seq != c.seq {
		return nil
	}
	return rc
}

// callAge orders a worker's calls in flight by arrival.
type callAge struct {
	q      []callRef
	head   int
	pushes int // since the last compaction
}

func (a *callAge) len() int { return len(a.q) - a.head }

func (a *callAge) pop() callRef {
	c := a.q[a.head]
	a.q[a.head] = callRef{}
	a.head++
	if a.head > 1024 && a.head > len(a.q)/2 {
		n := copy(a.q, a.q[a.head:])
		clear(a.q[n:])
		a.q, a.head = a.q[:n], 0
	}
	return c
}

func (a *callAge) compact() {
	out := a.q[:0]
	for i := a.head; i < len(a.q); i++ {
		if a.q[i].live() != nil {
			out = append(out, a.q[i])
		}
	}
	clear(a.q[len(out):])
	a.q, a.head, a.pushes = out, 0, 0
}

// admitCall queues a new call and, past the worker's bound, ends one:
// every call in flight is in the queue, so what is live never passes it.
func (r *rpcChannel) admitCall(rc *rpcCall) {
	env := r.c.env
	a := env.callAge
	a.q = append(a.q, callRef{r, rc.call.CallID, rc.call.Seq})
	a.pushes++
	bound := env.opt.MaxCallsTotal
	if a.len() <= bound {
		return
	}
	if a.pushes >= bound/2 {
		// Stale entries (calls answered since) may make up the excess.
		a.compact()
		if a.len() <= bound {
			return
		}
	}
	env.stats.Evictions[evictCallInFlight]++
	r.c.anomaly("dcerpc_too_many_calls_total")
	// Either way the call ended is its channel's oldest, ended as
	// --max-calls ends one (evictOldest: calls that change nothing join
	// the channel's flood summary).
	if len(r.calls) > callFairShare {
		r.evictOldest()
		return
	}
	for a.len() > 0 {
		ref := a.pop()
		if old := ref.live(); old != nil && old != rc {
			// A channel emptied here is most often one of thousands gone
			// quiet with its calls unanswered: untrack gives back what it
			// grew to hold them (300 MB for 16,000 of them).
			ref.ch.evictOldest()
			return
		}
	}
}
