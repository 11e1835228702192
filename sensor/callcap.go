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
type callAge struct{ boundQueue[callRef] }

func callRefLive(c callRef) bool { return c.live() != nil }

// admitCall queues a new call and, past the worker's bound, ends one.
// Either way the call ended is its channel's oldest, ended as --max-calls
// ends one (evictOldest: calls that change nothing join the channel's
// flood summary); a channel emptied so, most often one of thousands gone
// quiet with its calls unanswered, gives back what it grew to hold them
// (untrack: 300 MB for 16,000 of them).
func (r *rpcChannel) admitCall(rc *rpcCall) {
	env := r.c.env
	if admitBounded(&env.callAge.boundQueue, callRef{r, rc.call.CallID, rc.call.Seq}, env.opt.MaxCallsTotal, callRefLive, keepRoom,
		len(r.calls), callFairShare, r.evictOldest, func(old callRef) { old.ch.evictOldest() }) {
		env.stats.Evictions[evictCallInFlight]++
		r.c.anomaly("dcerpc_too_many_calls_total")
	}
}
