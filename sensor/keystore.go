package sensor

import (
	"net/netip"
	"sync"

	"github.com/tschsensor/tschsensor/dissect"
)

// maxSharedSessionKeys bounds the SMB3 session keys remembered for channels
// bound later; the oldest go first.
const maxSharedSessionKeys = 4096

type sessionKeyID struct {
	server netip.Addr
	id     uint64
}

// sessionKeyStore holds the SMB3 keys of established sessions by server
// and session id, for every connection of a session (multichannel binding,
// MS-SMB2 3.3.5.5.2). Workers hash flows per connection, so a channel bound
// later may land on another worker than the one that saw the session set
// up: one store serves all the workers of a replay or live capture. It is
// read and written only when a session setup completes (put) or a channel
// binds (get), never per packet, so a mutex costs nothing that matters.
type sessionKeyStore struct {
	mu    sync.Mutex
	max   int
	keys  map[sessionKeyID]*dissect.SMB3Keys
	order []sessionKeyID // insertion order, a ring of max entries
	next  int
}

func newSessionKeyStore(max int) *sessionKeyStore {
	return &sessionKeyStore{max: max, keys: make(map[sessionKeyID]*dissect.SMB3Keys)}
}

// get returns the keys of a session, nil when unknown. The keys are never
// changed once stored, so callers may share them.
func (t *sessionKeyStore) get(server netip.Addr, id uint64) *dissect.SMB3Keys {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.keys[sessionKeyID{server, id}]
}

// put stores a session's keys, evicting the oldest session past the bound.
func (t *sessionKeyStore) put(server netip.Addr, id uint64, k *dissect.SMB3Keys) {
	t.mu.Lock()
	defer t.mu.Unlock()
	key := sessionKeyID{server, id}
	if _, ok := t.keys[key]; ok {
		t.keys[key] = k
		return
	}
	if len(t.order) < t.max {
		t.order = append(t.order, key)
	} else {
		delete(t.keys, t.order[t.next])
		t.order[t.next] = key
		t.next = (t.next + 1) % t.max
	}
	t.keys[key] = k
}

// len is the number of sessions stored.
func (t *sessionKeyStore) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.keys)
}
