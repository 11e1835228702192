package sensor

// SMB requests awaiting their response are bounded per connection
// (MaxPending) and per worker (MaxPendingTotal): connections each holding
// just under MaxPending unanswered requests would otherwise grow without
// bound (1,000,000 CREATEs over 250 connections took 231 MB). Past the
// worker's bound a connection holding more than its fair share gives up
// its own oldest request; one holding fewer the worker's oldest.

const (
	// pendCost is what a pending request costs (map entry, request,
	// queue entries).
	pendCost = 256
	// pendShare: pending requests may take 1/8 of a worker's budget.
	pendShare = 8
	// pendFairShare is what a connection keeps under pressure.
	pendFairShare = 8
	// Eviction reason of a request past MaxPendingTotal.
	evictPendingRequest = "pending_request"
)

// pendOwner is a connection's table of pending requests (SMB2's or SMB1's).
type pendOwner interface {
	pendingLive(id, seq uint64) bool
	pendingCount() int
	// dropPending forgets the request id; dropOldestPending the
	// connection's oldest.
	dropPending(id uint64)
	dropOldestPending()
	anomaly(name string)
}

type pendRef struct {
	o       pendOwner
	id, seq uint64
}

// pendAgeAll orders a worker's pending requests by arrival.
type pendAgeAll struct{ boundQueue[pendRef] }

func pendRefLive(r pendRef) bool { return r.o.pendingLive(r.id, r.seq) }

// admit queues a new pending request of o and, past the worker's bound,
// drops one (admitBounded).
func (a *pendAgeAll) admit(env *connEnv, o pendOwner, id, seq uint64) {
	if admitBounded(&a.boundQueue, pendRef{o, id, seq}, env.opt.MaxPendingTotal, pendRefLive, keepRoom,
		o.pendingCount(), pendFairShare, o.dropOldestPending, func(r pendRef) { r.o.dropPending(r.id) }) {
		env.stats.Evictions[evictPendingRequest]++
		o.anomaly("smb_too_many_pending_total")
	}
}

func (s *smbState) pendingCount() int { return len(s.pending) }
func (s *smbState) dropPending(id uint64) {
	delete(s.pending, id)
	// The connection may be idle: its age queue is compacted here or it
	// would keep an entry for every request it ever sent.
	s.pendAge.compact(len(s.pending), s.pendingLive)
}
func (s *smbState) anomaly(name string) { s.c.anomaly(name) }
func (s *smbState) dropOldestPending() {
	if old, ok := s.pendAge.oldest(s.pendingLive); ok {
		delete(s.pending, old)
	}
}

func (m *smb1State) pendingCount() int { return len(m.pending) }
func (m *smb1State) dropPending(id uint64) {
	delete(m.pending, smb1KeyOf(id))
	m.pendAge.compact(len(m.pending), m.pendingLive)
}
func (m *smb1State) anomaly(name string) { m.s.c.anomaly(name) }
func (m *smb1State) dropOldestPending() {
	if old, ok := m.pendAge.oldest(m.pendingLive); ok {
		delete(m.pending, smb1KeyOf(old))
	}
}
