package sensor

import (
	"net/netip"

	"github.com/tschsensor/tschsensor/dissect"
)

// connEnv is what a connection and the state machines above it (SMB,
// DCE-RPC over TCP and pipes, their message framers) use of the worker that
// runs them: limits, counters, the call-stub and message-memory budgets, the
// endpoint-mapper table, the SMB3 session keys and the record output. It is
// handed to them at construction instead of a back-pointer, so that a state
// machine is built and tested without a Worker (env_test.go) and what it
// may touch is listed here. One per worker; connections share it.
type connEnv struct {
	opt   *Options
	stats *Stats
	// stubBytes is what the calls in flight hold against opt.MaxStubTotal.
	stubBytes *int
	// workerBounds orders what the worker bounds across its connections.
	*workerBounds
	// mem accounts what framers buffer against the memory budget.
	mem msgBudget
	epm *EPMTable
	// keys holds the SMB3 session keys shared by the connections
	// (channels) of a session.
	keys keyStore
	// rec takes finished records, numbered by seq; file names the capture
	// they come from.
	rec  Recorder
	seq  recordSeq
	file *string
}

// msgBudget accounts the buffers of message framers (halves).
type msgBudget interface {
	// settle accounts h's buffer after a delivery and evicts the oldest
	// bulk buffers while over the budget.
	settle(h *half)
	// release drops h's account when its owner ends.
	release(h *half)
}

// keyStore holds SMB3 session keys by server and session id
// (sessionKeyStore; workerKeys for a worker, which may share it).
type keyStore interface {
	get(server netip.Addr, id uint64) *dissect.SMB3Keys
	put(server netip.Addr, id uint64, k *dissect.SMB3Keys)
}

// recordSeq numbers records in the order they are made; a number handed
// out for a record that will never be delivered is given back.
type recordSeq interface {
	nextSeq() uint64
	dropSeq(seq uint64)
}

// workerBounds holds, in arrival order, what a worker bounds across all its
// connections: calls holding stub bytes (stubage.go), calls in flight
// (callcap.go), pending SMB requests (pendcap.go), open handles, connected
// trees and sessions (filecap.go).
type workerBounds struct {
	stubAge     stubAge
	callAge     callAge
	pendAll     pendAgeAll
	filesAll    fileQueue
	treesAll    fileQueue
	sessionsAll fileQueue
}

// newConnEnv is the worker's environment for its connections.
func (w *Worker) newConnEnv() connEnv {
	return connEnv{opt: &w.opt, stats: &w.stats, stubBytes: &w.stubBytes, workerBounds: &w.workerBounds, mem: w, epm: w.epm,
		keys: workerKeys{w}, rec: w.rec, seq: w, file: &w.file}
}

// workerKeys is the worker's view of the shared key store.
type workerKeys struct{ w *Worker }

// get looks a session's keys up; keyWait (sharded replay) first lets every
// other worker reach this packet, so that the lookup sees what one worker
// would have seen.
func (k workerKeys) get(server netip.Addr, id uint64) *dissect.SMB3Keys {
	if k.w.keyWait != nil {
		k.w.keyWait()
	}
	return k.w.sessionKeys().get(server, id)
}

func (k workerKeys) put(server netip.Addr, id uint64, keys *dissect.SMB3Keys) {
	k.w.sessionKeys().put(server, id, keys)
}
