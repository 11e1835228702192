package sensor

// fifo is what every age queue is built on: entries in arrival order that
// name something held elsewhere (a map's entry) without keeping it alive,
// read from head; entries whose thing went stay queued until they reach
// the front or a filter drops them.
//
// lean is the queue's kind, the same at every call (giveRoom or keepRoom):
// a queue of which there are thousands (a connection's or a channel's)
// moves its entries to the front once 64 were taken and gives back its
// array when most of it went; one of which there is one (a worker's) waits
// for 1024 and keeps its array.
type fifo[T any] struct {
	q    []T
	head int
}

const (
	giveRoom = true
	keepRoom = false
)

func (a *fifo[T]) len() int { return len(a.q) - a.head }

func (a *fifo[T]) put(x T) { a.q = append(a.q, x) }

// skip drops the front entry, zeroed so that the array keeps nothing
// alive.
func (a *fifo[T]) skip() {
	var zero T
	a.q[a.head] = zero
	a.head++
}

// take pops the front entry.
func (a *fifo[T]) take(lean bool) T {
	x := a.q[a.head]
	a.skip()
	a.settle(lean)
	return x
}

// settle moves the entries to the front once most of the array is behind
// head.
func (a *fifo[T]) settle(lean bool) {
	least := 1024
	if lean {
		least = 64
	}
	if a.head <= least || a.head <= len(a.q)/2 {
		return
	}
	n := copy(a.q, a.q[a.head:])
	clear(a.q[n:])
	a.q, a.head = a.q[:n], 0
	if lean && cap(a.q) > 4*n+256 {
		// Most of what it held went: give the room back (a
		// connection's queue, thousands of them).
		a.q = append([]T(nil), a.q...)
	}
}

// filter keeps the entries live accepts.
func (a *fifo[T]) filter(live func(T) bool, lean bool) {
	out := a.q[:0]
	for i := a.head; i < len(a.q); i++ {
		if live(a.q[i]) {
			out = append(out, a.q[i])
		}
	}
	clear(a.q[len(out):])
	if lean && cap(out) > 4*len(out)+256 {
		// Most of what it held went: give the room back.
		out = append([]T(nil), out...)
	}
	a.q, a.head = out, 0
}

// boundQueue is a fifo that holds everything of a kind a worker bounds
// (calls in flight, pending requests, handles), so that what is live
// never passes it; pushes counts since the last filter.
type boundQueue[T any] struct {
	fifo[T]
	pushes int
}

func (a *boundQueue[T]) push(x T) {
	a.put(x)
	a.pushes++
}

// over says whether the queue holds more than bound live entries: past
// bound, once stale entries may make up the excess (half the bound pushed
// since the last filter), they are filtered away first.
func (a *boundQueue[T]) over(bound int, live func(T) bool, lean bool) bool {
	if a.len() <= bound {
		return false
	}
	if a.pushes >= bound/2 {
		a.compact(live, lean)
		return a.len() > bound
	}
	return true
}

// admitBounded is the worker-wide bound every kind shares (calls in flight,
// pending requests, handles, trees, sessions): x, of which its owner (a
// channel or a connection) now holds mine, is queued, and past bound live
// entries room is made without letting one owner push the others out: an
// owner holding more than fair gives up its own oldest (dropOwn), one
// holding fewer the worker's oldest live entry other than x (drop). x, the
// newest, is never taken off the queue. It reports whether the bound was
// passed.
func admitBounded[T comparable](a *boundQueue[T], x T, bound int, live func(T) bool, lean bool,
	mine, fair int, dropOwn func(), drop func(T)) bool {
	a.push(x)
	if !a.over(bound, live, lean) {
		return false
	}
	if mine > fair {
		dropOwn()
		return true
	}
	for a.len() > 0 && a.q[a.head] != x {
		if y := a.take(lean); live(y) {
			drop(y)
			break
		}
	}
	return true
}

func (a *boundQueue[T]) compact(live func(T) bool, lean bool) {
	a.filter(live, lean)
	a.pushes = 0
}

// ageQueue keeps (id, seq) pairs in arrival order so that the oldest of a
// map's entries is found in amortised O(1). seq tells a live entry from an
// earlier one that reused its id.
type ageQueue struct{ fifo[ageItem] }

type ageItem struct{ id, seq uint64 }

func (a *ageQueue) push(id, seq uint64) { a.put(ageItem{id, seq}) }

// oldest pops entries until live accepts one, which it returns.
func (a *ageQueue) oldest(live func(id, seq uint64) bool) (uint64, bool) {
	for a.head < len(a.q) {
		it := a.q[a.head]
		a.skip()
		if live(it.id, it.seq) {
			a.settle(giveRoom)
			return it.id, true
		}
	}
	a.q, a.head = a.q[:0], 0
	return 0, false
}

// compact drops what is no longer live once stale entries outnumber the
// live ones n: the queue stays within a small multiple of the map's size.
func (a *ageQueue) compact(n int, live func(id, seq uint64) bool) {
	if a.len() <= 2*n+64 {
		return
	}
	a.filter(func(it ageItem) bool { return live(it.id, it.seq) }, giveRoom)
}
