package sensor

import (
	"math"
	"sync"
)

// shardProgress lets a sharded replay's worker wait until the others have
// processed every packet before a position, so that what it reads from
// state the workers share (the SMB3 session keys of a channel bound on
// another connection) is what one worker would have read there. Workers
// publish their progress once per batch and when they start waiting, never
// per packet; waits happen only when a channel binds to a session.
//
// It cannot deadlock: the dispatcher sends batches to every worker in
// rounds and a worker never blocks handing a batch on (its out channel
// holds all its batches), so a worker that waits at position p only waits
// for others to finish their entries before p, which they do unless they
// wait themselves at some q < p. The one waiting at the lowest position
// has published it and every worker it waits for has published more.
type shardProgress struct {
	mu   sync.Mutex
	cond sync.Cond
	// done[i]: worker i has processed all its entries before done[i].
	done []uint64
}

func newShardProgress(n int) *shardProgress {
	p := &shardProgress{done: make([]uint64, n)}
	p.cond.L = &p.mu
	return p
}

// reached records that worker i has processed everything before pos.
func (p *shardProgress) reached(i int, pos uint64) {
	p.mu.Lock()
	if pos > p.done[i] {
		p.done[i] = pos
		p.cond.Broadcast()
	}
	p.mu.Unlock()
}

// stopped records that worker i will process nothing more.
func (p *shardProgress) stopped(i int) { p.reached(i, math.MaxUint64) }

// wait: worker i is at pos; it returns once every other worker has
// processed its entries before pos.
func (p *shardProgress) wait(i int, pos uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if pos > p.done[i] {
		p.done[i] = pos
		p.cond.Broadcast()
	}
	for {
		behind := false
		for j, d := range p.done {
			if j != i && d < pos {
				behind = true
				break
			}
		}
		if !behind {
			return
		}
		p.cond.Wait()
	}
}
