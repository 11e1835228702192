package sensor

// ageQueue keeps (id, seq) pairs in arrival order so that the oldest of a
// map's entries is found in amortised O(1): entries that left the map stay
// queued until they reach the front or a compaction drops them. seq tells a
// live entry from an earlier one that reused its id.
type ageQueue struct {
	q    []ageItem
	head int
}

type ageItem struct{ id, seq uint64 }

func (a *ageQueue) push(id, seq uint64) { a.q = append(a.q, ageItem{id, seq}) }

// oldest pops entries until live accepts one, which it returns.
func (a *ageQueue) oldest(live func(id, seq uint64) bool) (uint64, bool) {
	for a.head < len(a.q) {
		it := a.q[a.head]
		a.head++
		if live(it.id, it.seq) {
			a.shrink()
			return it.id, true
		}
	}
	a.q, a.head = a.q[:0], 0
	return 0, false
}

// compact drops what is no longer live once stale entries outnumber the
// live ones n: the queue stays within a small multiple of the map's size.
func (a *ageQueue) compact(n int, live func(id, seq uint64) bool) {
	if len(a.q)-a.head <= 2*n+64 {
		return
	}
	out := a.q[:0]
	for _, it := range a.q[a.head:] {
		if live(it.id, it.seq) {
			out = append(out, it)
		}
	}
	clear(a.q[len(out):])
	if cap(out) > 4*len(out)+256 {
		// Most of what it held went: give the room back.
		out = append([]ageItem(nil), out...)
	}
	a.q, a.head = out, 0
}

func (a *ageQueue) shrink() {
	if a.head > 64 && a.head > len(a.q)/2 {
		n := copy(a.q, a.q[a.head:])
		a.q, a.head = a.q[:n], 0
		if cap(a.q) > 4*n+256 {
			// Most of what it held went: give the room back (a
			// connection's queue, thousands of them).
			a.q = append([]ageItem(nil), a.q...)
		}
	}
}
