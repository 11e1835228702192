package sensor

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tschsensor/tschsensor/dissect"
)

// Defaults of the endpoint-mapper table.
const (
	// DefaultEPMEntries bounds learnt (server, port) → interface mappings.
	DefaultEPMEntries = 65536
	// DefaultEPMTTL expires a mapping: dynamic RPC ports are reused.
	DefaultEPMTTL = 24 * time.Hour
)

type epmKey struct {
	addr netip.Addr
	port uint16
}

type epmEntry struct {
	ifaces []string // interface UUIDs mapped to this port
	seen   time.Time
}

// EPMTable remembers which interfaces the endpoint mapper said a server port
// serves, so that a connection whose bind is not in the capture can still be
// named when its port serves exactly one interface. It is shared by workers.
type EPMTable struct {
	mu   sync.Mutex
	max  int
	ttl  time.Duration
	m    map[epmKey]*epmEntry
	evic uint64
	// gen changes whenever a new server port is learnt: flow tables read
	// it on every packet of an ignored flow (one atomic load) and look the
	// flow's ports up again only when it moved.
	gen atomic.Uint32
	// size mirrors len(m) so that new flows skip the lock while the table
	// is empty (most of the time on most links).
	size atomic.Int32
}

// NewEPMTable returns a table bounded to max entries expiring after ttl
// (capture time); zero values take the defaults.
func NewEPMTable(max int, ttl time.Duration) *EPMTable {
	if max <= 0 {
		max = DefaultEPMEntries
	}
	if ttl <= 0 {
		ttl = DefaultEPMTTL
	}
	return &EPMTable{max: max, ttl: ttl, m: make(map[epmKey]*epmEntry)}
}

// Learn records that server addr:port serves the interface uuid.
func (t *EPMTable) Learn(addr netip.Addr, port uint16, uuid string, now time.Time) {
	if !addr.IsValid() || port == 0 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	k := epmKey{addr.Unmap(), port}
	e := t.m[k]
	if e == nil {
		if len(t.m) >= t.max {
			t.evictLocked(now)
		}
		e = &epmEntry{}
		t.m[k] = e
		t.size.Store(int32(len(t.m)))
		t.gen.Add(1)
	}
	e.seen = now
	for _, u := range e.ifaces {
		if u == uuid {
			return
		}
	}
	if len(e.ifaces) < 16 {
		e.ifaces = append(e.ifaces, uuid)
	}
}

func (t *EPMTable) evictLocked(now time.Time) {
	var oldest epmKey
	var ot time.Time
	first := true
	for k, e := range t.m {
		if now.Sub(e.seen) > t.ttl {
			delete(t.m, k)
			t.size.Store(int32(len(t.m)))
			t.evic++
			continue
		}
		if first || e.seen.Before(ot) {
			oldest, ot, first = k, e.seen, false
		}
	}
	if len(t.m) >= t.max && !first {
		delete(t.m, oldest)
		t.size.Store(int32(len(t.m)))
		t.evic++
	}
}

// Lookup returns the single interface known at addr:port, if exactly one.
func (t *EPMTable) Lookup(addr netip.Addr, port uint16, now time.Time) (dissect.Iface, string, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.m[epmKey{addr.Unmap(), port}]
	if e == nil || now.Sub(e.seen) > t.ttl || len(e.ifaces) != 1 {
		return dissect.IfaceUnknown, "", false
	}
	return dissect.IfaceByUUID(e.ifaces[0], 1), e.ifaces[0], true
}

// Gen returns a number that changes whenever a new server port is learnt.
func (t *EPMTable) Gen() uint32 { return t.gen.Load() }

// Mapped reports whether the endpoint mapper named any interface at
// addr:port (and the mapping has not expired).
func (t *EPMTable) Mapped(addr netip.Addr, port uint16, now time.Time) bool {
	if t.size.Load() == 0 {
		return false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.m[epmKey{addr.Unmap(), port}]
	return e != nil && now.Sub(e.seen) <= t.ttl
}
