package sensor

// A worker out of stub budget (MaxStubTotal) gives up the stubs of the
// call that took its first stub bytes longest ago, not the bytes of the
// call that needs them now: a flood of long requests that never end would
// otherwise hold the whole budget and truncate every real call after it,
// and a registration's decode needs its stub whole.

// Eviction reason of a call's stubs.
const evictCallStub = "call_stub"

// stubAge orders the calls holding stub bytes by when they first took
// some. Entries name a call by channel, id and sequence number, so a call
// that finished since is skipped, and the queue keeps no stub alive.
type stubAge struct {
	fifo[stubItem]
	// live is how many entries were live at the last compaction.
	live int
}

type stubItem struct {
	ch  *rpcChannel
	id  uint32
	seq uint64
}

func (a *stubAge) push(ch *rpcChannel, id uint32, seq uint64) {
	a.put(stubItem{ch, id, seq})
	if n := a.len(); n > 1024 && n > 2*a.live+1024 {
		a.compact()
	}
}

// call returns the call an entry names while it still holds stub bytes.
func (it *stubItem) call() *rpcCall {
	rc := it.ch.calls[it.id]
	if rc == nil || rc.call.Seq != it.seq || rc.stubBytes() == 0 {
		return nil
	}
	return rc
}

// oldest returns the entry of the oldest call holding stub bytes, dropping
// the entries before it.
func (a *stubAge) oldest() (*stubItem, *rpcCall) {
	for a.head < len(a.q) {
		it := &a.q[a.head]
		if rc := it.call(); rc != nil {
			return it, rc
		}
		a.skip()
	}
	a.q, a.head = a.q[:0], 0
	return nil, nil
}

func (a *stubAge) pop() { a.take(keepRoom) }

func stubItemLive(it stubItem) bool { return it.call() != nil }

func (a *stubAge) compact() {
	a.filter(stubItemLive, keepRoom)
	a.live = len(a.q)
}

// makeStubRoom gives up the stubs of the oldest calls until n more bytes
// fit the worker's stub budget; never those of cur, the call asking (if
// it is the oldest, it is the one cut).
func (r *rpcChannel) makeStubRoom(cur *rpcCall, n int) {
	env := r.c.env
	for *env.stubBytes+n > env.opt.MaxStubTotal {
		it, rc := env.stubAge.oldest()
		if rc == nil || rc == cur {
			return
		}
		ch := it.ch
		env.stubAge.pop()
		ch.evictStub(rc)
	}
}

// evictStub drops what a call holds of its stubs; the call is still
// reported, truncated.
func (r *rpcChannel) evictStub(rc *rpcCall) {
	*r.c.env.stubBytes -= rc.stubBytes()
	rc.req, rc.resp, rc.reqTail, rc.scan = nil, nil, nil, nil
	rc.reqCut, rc.stubGone = false, true
	rc.call.Truncated = true
	r.c.env.stats.Evictions[evictCallStub]++
	r.c.anomaly("dcerpc_stub_evicted")
}
