package sensor

import (
	"encoding/binary"
	"math/rand/v2"
	"time"
)

// The flow verdict table sits in front of TCP reassembly. Every TCP packet
// costs a header parse and one lookup in it; only flows that may carry SMB,
// NBSS or DCE-RPC reach gopacket's assembler and get a connection object.
// A flow is decided from the first payload bytes of each direction (when its
// SYN was seen), the well-known ports and the ports the endpoint mapper
// handed out; everything else is ignored at the cost of one fixed-size entry.

// verdict is what the table decided a flow carries.
type verdict uint8

const (
	verdictUnknown verdict = iota // not decided yet
	verdictSMB                    // SMB over direct TCP (or an SMB port)
	verdictNBSS                   // NetBIOS session service (port 139, session request)
	verdictRPC                    // DCE-RPC connection-oriented
	verdictIgnored                // none of these: packets cost a lookup
	numVerdicts
)

func (v verdict) String() string {
	switch v {
	case verdictSMB:
		return "smb"
	case verdictNBSS:
		return "nbss"
	case verdictRPC:
		return "dcerpc"
	case verdictIgnored:
		return "ignored"
	}
	return "unknown"
}

// Flow table bounds.
const (
	// DefaultMaxFlows bounds the entries of one worker's flow table
	// (about 96 bytes each: 48 MiB at the bound, allocated as it fills).
	DefaultMaxFlows = 1 << 19
	// flowShortIdle ends half-open, closed and undecided entries silent for
	// this long (capture time); decided flows use Options.IdleTimeout.
	flowShortIdle = 30 * time.Second
	// flowMinSlots is the table's first allocation; it doubles up to the
	// bound, never per flow.
	flowMinSlots = 1 << 10
	// flowEvictScan bounds the slots looked at to choose a victim when the
	// table is full.
	flowEvictScan = 32
	// flowMaxEarly is how many segments ahead of a seen SYN are dropped
	// while waiting for the stream's first bytes; past it the flow is
	// taken mid-stream. Reordering of a stream's first segment is rare, a
	// flood of one out-of-order segment per connection is not.
	flowMaxEarly = 2
	// flowPrefix is the most bytes of a direction's start kept in the
	// entry while they are too few to decide (an NBSS header and the SMB
	// protocol id).
	flowPrefix = 8
)

// Entry flags.
const (
	flowUsed    = 1 << iota
	flowSyn0    // SYN seen from endpoint a (direction 0)
	flowSyn1    // SYN seen from endpoint b
	flowSynAck0 // that SYN carried ACK
	flowSynAck1
	flowConn    // packets go to the assembler
	flowHadConn // a connection object may still exist in the assembler
	flowClosed  // FIN or RST seen, or the connection completed
	flowData    // payload seen
	flowPort    // a well-known or endpoint-mapper port
	flowMid     // decide as a mid-stream flow (no SYN, or picked up late)
)

// flowKey is a TCP flow, endpoints in canonical order (lower first).
type flowKey struct {
	a, b   [16]byte
	pa, pb uint16
	vlan   uint16
	v6     bool
}

// flowEntry is one flow's fixed-size state; it holds no pointers, so the
// garbage collector never scans the table.
type flowEntry struct {
	key    flowKey
	last   int64 // capture time, Unix nanoseconds
	isn    [2]uint32
	pre    [2][flowPrefix]byte
	hash   uint32
	hunted uint32 // bytes hunted mid-stream, or early segments at start
	gen    uint32 // endpoint-mapper generation the port class was taken at
	flags  uint16
	v      verdict
	preLen [2]uint8
}

// Eviction reasons, counted in Stats.Evictions.
const (
	evictIdleHalfOpen = "flow_idle_half_open"
	evictIdle         = "flow_idle"
	evictFullHalfOpen = "flow_table_full_half_open"
	evictFullIgnored  = "flow_table_full_ignored"
	evictFullUndecide = "flow_table_full_undecided"
	evictFullActive   = "flow_table_full_active"
)

// flowTable is an open-addressing hash table (linear probing, backward-shift
// deletion) over one array of entries.
type flowTable struct {
	e    []flowEntry
	mask uint32
	n    int
	max  int
	seed uint64
}

func newFlowTable(max int) flowTable {
	// A per-table random seed: flows are attacker-chosen, and a known hash
	// would let them build long probe chains.
	return flowTable{max: max, seed: rand.Uint64() | 1}
}

func (k *flowKey) hashWith(seed uint64) uint32 {
	h := seed
	if !k.v6 {
		h = flowMix(h ^ uint64(binary.LittleEndian.Uint32(k.a[0:])) ^ uint64(binary.LittleEndian.Uint32(k.b[0:]))<<32)
		h = flowMix(h ^ uint64(k.pa) ^ uint64(k.pb)<<16 ^ uint64(k.vlan)<<32)
		return uint32(h ^ h>>32)
	}
	h = flowMix(h ^ binary.LittleEndian.Uint64(k.a[0:]))
	h = flowMix(h ^ binary.LittleEndian.Uint64(k.a[8:]))
	h = flowMix(h ^ binary.LittleEndian.Uint64(k.b[0:]))
	h = flowMix(h ^ binary.LittleEndian.Uint64(k.b[8:]))
	h = flowMix(h ^ uint64(k.pa) ^ uint64(k.pb)<<16 ^ uint64(k.vlan)<<32)
	return uint32(h ^ h>>32)
}

func flowMix(h uint64) uint64 {
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 31
	h *= 0x94d049bb133111eb
	return h ^ h>>29
}

// makeFlowKey builds the canonical key of a packet; dir is 0 when the
// packet's source is endpoint a.
func makeFlowKey(f *frame, sp, dp uint16, k *flowKey) (dir int) {
	*k = flowKey{vlan: f.vlan, v6: f.v6}
	c := compareBytes(f.src, f.dst)
	if c < 0 || c == 0 && sp <= dp {
		copy(k.a[:], f.src)
		copy(k.b[:], f.dst)
		k.pa, k.pb = sp, dp
		return 0
	}
	copy(k.a[:], f.dst)
	copy(k.b[:], f.src)
	k.pa, k.pb = dp, sp
	return 1
}

func compareBytes(x, y []byte) int {
	for i := range min(len(x), len(y)) {
		if x[i] != y[i] {
			if x[i] < y[i] {
				return -1
			}
			return 1
		}
	}
	return len(x) - len(y)
}

// lookup returns the slot of k, or -1.
func (t *flowTable) lookup(k *flowKey) int {
	if t.n == 0 {
		return -1
	}
	h := k.hashWith(t.seed)
	for i := h & t.mask; ; i = (i + 1) & t.mask {
		e := &t.e[i]
		if e.flags&flowUsed == 0 {
			return -1
		}
		if e.hash == h && e.key == *k {
			return int(i)
		}
	}
}

// insert adds k (absent) and returns its slot. A full table evicts one
// entry first, chosen to protect detection; the reason goes to count.
func (t *flowTable) insert(k *flowKey, now int64, count func(reason string)) int {
	h := k.hashWith(t.seed)
	if t.n >= t.max {
		t.evictNear(h&t.mask, count)
	} else if len(t.e) == 0 || t.n+1 > len(t.e)/4*3 {
		t.grow()
	}
	i := h & t.mask
	for t.e[i].flags&flowUsed != 0 {
		i = (i + 1) & t.mask
	}
	t.e[i] = flowEntry{key: *k, hash: h, last: now, flags: flowUsed}
	t.n++
	return int(i)
}

// slotsFor is the table size holding max entries at load factor 3/4.
func slotsFor(max int) int {
	n := flowMinSlots
	for n/4*3 < max {
		n *= 2
	}
	return n
}

func (t *flowTable) grow() {
	size := max(len(t.e)*2, flowMinSlots)
	if limit := slotsFor(t.max); size > limit {
		size = limit
	}
	if size == len(t.e) {
		return
	}
	old := t.e
	t.e = make([]flowEntry, size)
	t.mask = uint32(size - 1)
	for i := range old {
		if old[i].flags&flowUsed == 0 {
			continue
		}
		j := old[i].hash & t.mask
		for t.e[j].flags&flowUsed != 0 {
			j = (j + 1) & t.mask
		}
		t.e[j] = old[i]
	}
}

// remove empties slot i, shifting back the entries of its probe chain so
// that lookups need no tombstones.
func (t *flowTable) remove(i uint32) {
	t.n--
	for {
		t.e[i] = flowEntry{}
		j := i
		for {
			j = (j + 1) & t.mask
			if t.e[j].flags&flowUsed == 0 {
				return
			}
			home := t.e[j].hash & t.mask
			// The entry at j may move to i unless its home lies cyclically
			// in (i, j].
			if i <= j {
				if i < home && home <= j {
					continue
				}
			} else if i < home || home <= j {
				continue
			}
			t.e[i] = t.e[j]
			i = j
			break
		}
	}
}

// evictClass ranks entries for eviction: lower goes first.
func (e *flowEntry) evictClass() (int, string) {
	switch {
	case e.flags&flowConn == 0 && (e.flags&flowData == 0 || e.flags&flowClosed != 0) && e.v != verdictIgnored:
		return 0, evictFullHalfOpen
	case e.v == verdictIgnored:
		return 1, evictFullIgnored
	case e.flags&flowConn == 0:
		return 2, evictFullUndecide
	}
	return 3, evictFullActive
}

// evictNear frees one entry of a full table: among the flowEvictScan
// entries from the new key's home on, the lowest class (half-open or
// closed, then ignored, then undecided, then followed flows), the oldest
// within it. Evicting where the new entry goes keeps probe chains as short
// as random deletions would: always evicting at one moving place (a clock
// hand) merges the table into one cluster.
func (t *flowTable) evictNear(home uint32, count func(reason string)) {
	best, bestClass := -1, 4
	var bestLast int64
	reason := ""
	seen := 0
	for step := uint32(0); step <= t.mask && seen < flowEvictScan; step++ {
		i := (home + step) & t.mask
		e := &t.e[i]
		if e.flags&flowUsed == 0 {
			continue
		}
		seen++
		c, r := e.evictClass()
		if c < bestClass || c == bestClass && e.last < bestLast {
			best, bestClass, bestLast, reason = int(i), c, e.last, r
			if c == 0 {
				break
			}
		}
	}
	if best < 0 {
		return
	}
	count(reason)
	t.remove(uint32(best))
}

// expire ends entries idle past their timeout; decided flows that may have
// a connection are left to the assembler's own idle flush first.
func (t *flowTable) expire(now int64, idle time.Duration, count func(reason string)) {
	short := now - int64(flowShortIdle)
	long := now - int64(idle)
	for i := uint32(0); int(i) < len(t.e); i++ {
		for {
			e := &t.e[i]
			if e.flags&flowUsed == 0 {
				break
			}
			c, _ := e.evictClass()
			switch {
			case (c == 0 || c == 2) && e.last < short:
				count(evictIdleHalfOpen)
			case e.last < long:
				count(evictIdle)
			default:
				c = -1
			}
			if c < 0 {
				break
			}
			// What shifts into i is looked at again.
			t.remove(i)
		}
	}
}

// FlowStats counts the flow table's work.
type FlowStats struct {
	// Flows counts flows by the verdict they reached (unknown: never
	// decided); Packets counts TCP packets by their flow's verdict when
	// they came.
	Flows   [numVerdicts]uint64
	Packets [numVerdicts]uint64
	// Active is the number of entries in the table (a gauge).
	Active uint64
}

func (s *FlowStats) merge(o *FlowStats) {
	for i := range s.Flows {
		s.Flows[i] += o.Flows[i]
		s.Packets[i] += o.Packets[i]
	}
	s.Active += o.Active
}
