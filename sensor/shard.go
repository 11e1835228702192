package sensor

import (
	"encoding/binary"
	"math"
	"net/netip"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/tschsensor/tschsensor/detect"
)

// Replay with several workers: a dispatcher reads the capture, hashes each
// TCP flow to one worker (both directions alike, as PACKET_FANOUT_HASH does
// for live capture) and copies its packets into that worker's batch. The
// output must not depend on the number of workers, so three things one
// worker does implicitly are made explicit:
//
//   - Position. Every packet has a global position; what a worker hands on
//     while it processes a packet carries that position, and a merger hands
//     records to the resolver and the detector in position order.
//   - Time. One worker ends idle connections when capture time passes a
//     second boundary; the dispatcher takes that decision from capture time
//     alone and sends it to every worker at the same position. The records
//     of such a flush are merged and ordered as one worker orders its own.
//   - Record numbers. Event ids hash a record's sequence number, which one
//     worker hands out in creation order across all flows. Workers report
//     each number as they hand it out; the merger renumbers in position
//     order, which is the order one worker would have used.
//
// The dispatcher, the workers and the merger run on their own goroutines
// and exchange batches through channels; a batch goes from the dispatcher
// to its worker, then to the merger, then back to the dispatcher.

const (
	// shardArena is the packet bytes one batch holds.
	shardArena = 1 << 20
	// shardMaxPackets bounds the entries of one batch.
	shardMaxPackets = 2048
	// shardBatches is the batches per worker in flight.
	shardBatches = 4
	// fragMapMax bounds the fragmented datagrams the dispatcher remembers.
	fragMapMax = 1 << 14
	// maxSeqMap bounds the record numbers the merger keeps per worker.
	maxSeqMap = 1 << 18
)

type shardInKind uint8

const (
	inPacket shardInKind = iota
	inFlush              // end idle connections at now
	inFile               // a new capture file starts
	inEnd                // end every connection
)

type shardIn struct {
	kind  shardInKind
	off   int
	n     int
	ci    gopacket.CaptureInfo
	link  layers.LinkType
	frame uint64
	pos   uint64
	now   time.Time
	// prev is the capture clock before this entry's packet: what one
	// worker's replay had released to the detector when it got there.
	prev time.Time
	file string
}

type shardOutKind uint8

const (
	outSeq  shardOutKind = iota // a record number was handed out
	outDrop                     // a record number will not be handed on
	outCall
	outFile
	outEPM
)

// shardOut is something a worker handed on, at a position; flush is set
// for what a flush (idle or final) made.
type shardOut struct {
	pos   uint64
	prev  time.Time
	flush bool
	kind  shardOutKind
	seq   uint64
	call  *detect.Call
	file  *detect.FileOp
	epm   epmRecord
}

type shardBatch struct {
	// end: the round of batches this one belongs to holds every entry
	// before end (see shardProgress).
	end   uint64
	arena []byte
	in    []shardIn
	out   []shardOut
}

// shardRecorder is a worker's Recorder: it appends to the batch in hand.
type shardRecorder struct {
	b     *shardBatch
	pos   uint64
	prev  time.Time
	flush bool
}

func (r *shardRecorder) add(o shardOut) {
	o.pos, o.prev, o.flush = r.pos, r.prev, r.flush
	r.b.out = append(r.b.out, o)
}

func (r *shardRecorder) Call(c *detect.Call)   { r.add(shardOut{kind: outCall, call: c}) }
func (r *shardRecorder) File(f *detect.FileOp) { r.add(shardOut{kind: outFile, file: f}) }
func (r *shardRecorder) EPM(server netip.Addr, port uint16, uuid string, t time.Time) {
	r.add(shardOut{kind: outEPM, epm: epmRecord{server, port, uuid, t}})
}

func (r *shardRecorder) seq(seq uint64, done bool) {
	k := outSeq
	if done {
		k = outDrop
	}
	r.add(shardOut{kind: k, seq: seq})
}

type shardWorker struct {
	id   int
	prog *shardProgress
	w    *Worker
	rec  *shardRecorder
	in   chan *shardBatch
	out  chan *shardBatch
	free chan *shardBatch
}

func (sw *shardWorker) run() {
	for b := range sw.in {
		sw.rec.b = b
		for i := range b.in {
			it := &b.in[i]
			sw.rec.pos, sw.rec.prev, sw.rec.flush = it.pos, it.prev, it.kind != inPacket
			switch it.kind {
			case inPacket:
				sw.w.frame = it.frame - 1
				sw.w.Packet(b.arena[it.off:it.off+it.n], it.ci, it.link)
			case inFlush:
				sw.w.flushAt(it.now)
			case inFile:
				sw.w.SetFile(it.file)
			case inEnd:
				sw.w.Flush()
			}
		}
		sw.prog.reached(sw.id, b.end)
		sw.out <- b
	}
	sw.prog.stopped(sw.id)
	close(sw.out)
}

// flushAt ends idle connections as a single worker would at capture time
// now (see flushClock).
func (w *Worker) flushAt(now time.Time) {
	defer w.recoverPanic()
	if now.After(w.now) {
		w.now = now
	}
	w.flush.next = w.now.Add(time.Second)
	w.flushIdle()
}

// shardDispatcher reads packets and hands them to workers.
type shardDispatcher struct {
	workers []*shardWorker
	cur     []*shardBatch
	f       frame
	pos     uint64
	frame   uint64
	now     time.Time
	flush   flushClock
	frags   map[fragKey]int
}

type fragKey struct {
	src, dst [4]byte
	id       uint16
}

func newShardDispatcher(opt Options, n int) *shardDispatcher {
	d := &shardDispatcher{frags: make(map[fragKey]int)}
	keys, prog := newSessionKeyStore(maxSharedSessionKeys), newShardProgress(n)
	for i := range n {
		rec := &shardRecorder{}
		w := NewWorker(opt, rec, nil)
		w.external = true
		w.seqHook = rec.seq
		w.smbKeys = keys
		w.keyWait = func() { prog.wait(i, rec.pos) }
		sw := &shardWorker{id: i, prog: prog, w: w, rec: rec, in: make(chan *shardBatch, shardBatches),
			out: make(chan *shardBatch, shardBatches), free: make(chan *shardBatch, shardBatches)}
		for range shardBatches {
			sw.free <- &shardBatch{arena: make([]byte, 0, shardArena)}
		}
		d.workers = append(d.workers, sw)
		d.cur = append(d.cur, <-sw.free)
	}
	return d
}

func (d *shardDispatcher) start() {
	for _, sw := range d.workers {
		go sw.run()
	}
}

// SetFile starts a new capture file on every worker.
func (d *shardDispatcher) SetFile(name string) {
	d.frame = 0
	for i := range d.workers {
		d.cur[i].in = append(d.cur[i].in, shardIn{kind: inFile, file: name})
	}
}

// Packet hands a copy of one packet to its flow's worker, then ends idle
// connections everywhere when a single worker would.
func (d *shardDispatcher) Packet(data []byte, ci gopacket.CaptureInfo, link layers.LinkType) {
	d.pos++
	d.frame++
	i := d.shard(data, link)
	b := d.cur[i]
	if len(b.in) >= shardMaxPackets || len(b.arena)+len(data) > cap(b.arena) {
		d.send()
		b = d.cur[i]
	}
	off := len(b.arena)
	if len(data) > cap(b.arena) {
		// A frame larger than an arena (maxCaptureLength allows it) gets
		// an arena of its own.
		b.arena = make([]byte, 0, len(data))
		off = 0
	}
	b.arena = append(b.arena, data...)
	prev := d.now
	b.in = append(b.in, shardIn{kind: inPacket, off: off, n: len(data), ci: ci, link: link, frame: d.frame, pos: d.pos, prev: prev})
	if ci.Timestamp.After(d.now) {
		d.now = ci.Timestamp
	}
	if !d.flush.due(d.now) {
		return
	}
	for _, b := range d.cur {
		b.in = append(b.in, shardIn{kind: inFlush, pos: d.pos, now: d.now, prev: prev})
	}
}

// send hands every worker its batch (empty ones too: the merger takes one
// batch from each worker per round) and takes fresh ones.
func (d *shardDispatcher) send() {
	for i, sw := range d.workers {
		// Called before the packet at d.pos joins a batch.
		d.cur[i].end = d.pos
		sw.in <- d.cur[i]
		d.cur[i] = <-sw.free
	}
}

// finish ends every connection and stops the workers.
func (d *shardDispatcher) finish() {
	for _, b := range d.cur {
		b.in = append(b.in, shardIn{kind: inEnd, pos: d.pos + 1, prev: d.now})
	}
	for i, sw := range d.workers {
		d.cur[i].end = math.MaxUint64
		sw.in <- d.cur[i]
		close(sw.in)
	}
}

// shard picks the worker of a packet: a symmetric hash of addresses and
// ports, so that both directions of a connection meet on one worker.
// Fragments of an IPv4 datagram follow its first fragment, which carries
// the ports; a datagram whose first fragment comes late is hashed on its
// addresses alone.
func (d *shardDispatcher) shard(data []byte, link layers.LinkType) int {
	n := len(d.workers)
	if decodeFrame(data, link, &d.f) != decTCP {
		return 0
	}
	var sport, dport uint16
	switch {
	case d.f.fragment:
		ip := d.f.ip
		ihl := int(ip[0]&0x0f) * 4
		k := fragKey{id: binary.BigEndian.Uint16(ip[4:])}
		copy(k.src[:], d.f.src)
		copy(k.dst[:], d.f.dst)
		if i, ok := d.frags[k]; ok {
			return i
		}
		if binary.BigEndian.Uint16(ip[6:])&0x1fff == 0 && len(ip) >= ihl+4 {
			sport, dport = binary.BigEndian.Uint16(ip[ihl:]), binary.BigEndian.Uint16(ip[ihl+2:])
		}
		i := int(flowHash(d.f.src, d.f.dst, sport, dport) % uint64(n))
		if len(d.frags) >= fragMapMax {
			clear(d.frags)
		}
		d.frags[k] = i
		return i
	case len(d.f.tcp) >= 4:
		sport, dport = binary.BigEndian.Uint16(d.f.tcp), binary.BigEndian.Uint16(d.f.tcp[2:])
	}
	return int(flowHash(d.f.src, d.f.dst, sport, dport) % uint64(n))
}

// flowHash hashes both endpoints alike: h(a, b) == h(b, a).
func flowHash(src, dst []byte, sport, dport uint16) uint64 {
	return mix64(endpointHash(src, sport) + endpointHash(dst, dport))
}

func endpointHash(addr []byte, port uint16) uint64 {
	h := uint64(14695981039346656037)
	for _, c := range addr {
		h = (h ^ uint64(c)) * 1099511628211
	}
	h = (h ^ uint64(port>>8)) * 1099511628211
	return (h ^ uint64(port&0xff)) * 1099511628211
}

func mix64(h uint64) uint64 {
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	return h ^ h>>33
}

// shardMerger hands the workers' records on in the order one worker would,
// and moves the orderer's watermark (release) as one worker's replay does
// after each packet: before the records of a packet, to the capture time
// the packets before it reached.
type shardMerger struct {
	next    EPMRecorder
	release func(time.Time)
	// seqs maps each worker's record numbers to the single-worker ones.
	seqs  []map[uint64]uint64
	seq   uint64
	heads []int
	held  []flushItem
	// panics counts rounds cut short by a panic (a bug), reported as
	// AnomalyPanic; hook sees what the panic carried.
	panics uint64
	hook   func(any)
}

func newShardMerger(next EPMRecorder, release func(time.Time), n int) *shardMerger {
	m := &shardMerger{next: next, release: release, heads: make([]int, n)}
	for range n {
		m.seqs = append(m.seqs, make(map[uint64]uint64))
	}
	return m
}

// run merges the workers' batches round by round until they stop, and
// hands the batches back to the dispatcher.
func (m *shardMerger) run(ws []*shardWorker) {
	bs := make([]*shardBatch, len(ws))
	for {
		for i, sw := range ws {
			b, ok := <-sw.out
			if !ok {
				return
			}
			bs[i] = b
		}
		m.safeRound(bs)
		for i, b := range bs {
			b.arena, b.in = b.arena[:0], b.in[:0]
			clear(b.out)
			b.out = b.out[:0]
			ws[i].free <- b
		}
	}
}

// safeRound is round with a panic counted: the workers' batches still go
// back to them, so a bug on the back half neither stops the sensor nor
// leaves the workers waiting for ever.
func (m *shardMerger) safeRound(bs []*shardBatch) {
	defer func() {
		if r := recover(); r != nil {
			m.panics++
			if m.hook != nil {
				m.hook(r)
			}
		}
	}()
	m.round(bs)
}

// round merges one batch of every worker, in position order.
func (m *shardMerger) round(bs []*shardBatch) {
	for i := range m.heads {
		m.heads[i] = 0
	}
	for {
		// The lowest position still to hand on, and whether it is a flush.
		w, best := -1, shardOut{}
		for i, b := range bs {
			if m.heads[i] >= len(b.out) {
				continue
			}
			o := b.out[m.heads[i]]
			if w < 0 || o.pos < best.pos || o.pos == best.pos && !o.flush && best.flush {
				w, best = i, o
			}
		}
		if w < 0 {
			return
		}
		// Releasing up to an earlier time again changes nothing: the
		// orderer only moves forward.
		m.release(best.prev)
		if !best.flush {
			// Only the worker of that packet made anything at it.
			b := bs[w]
			for ; m.heads[w] < len(b.out); m.heads[w]++ {
				o := &b.out[m.heads[w]]
				if o.pos != best.pos || o.flush {
					break
				}
				m.handle(w, o, false)
			}
			continue
		}
		// A flush at best.pos on every worker: endpoint-mapper answers pass
		// at once, records are ordered as flushBuffer orders them.
		for i, b := range bs {
			for ; m.heads[i] < len(b.out); m.heads[i]++ {
				o := &b.out[m.heads[i]]
				if o.pos != best.pos || !o.flush {
					break
				}
				m.handle(i, o, true)
			}
		}
		m.releaseHeld()
	}
}

func (m *shardMerger) handle(w int, o *shardOut, flush bool) {
	switch o.kind {
	case outSeq:
		m.seq++
		if len(m.seqs[w]) >= maxSeqMap {
			// Records in flight are bounded well below this; a number
			// that never comes back (a path that neither hands a record
			// on nor reports it dropped) must not grow memory for ever.
			clear(m.seqs[w])
		}
		m.seqs[w][o.seq] = m.seq
	case outDrop:
		delete(m.seqs[w], o.seq)
	case outEPM:
		m.next.EPM(o.epm.server, o.epm.port, o.epm.uuid, o.epm.t)
	case outCall:
		o.call.Seq = m.renumber(w, o.call.Seq)
		if flush {
			m.held = append(m.held, flushItem{call: o.call})
		} else {
			m.next.Call(o.call)
		}
	case outFile:
		o.file.Seq = m.renumber(w, o.file.Seq)
		if flush {
			m.held = append(m.held, flushItem{file: o.file})
		} else {
			m.next.File(o.file)
		}
	}
}

func (m *shardMerger) renumber(w int, seq uint64) uint64 {
	if g, ok := m.seqs[w][seq]; ok {
		delete(m.seqs[w], seq)
		return g
	}
	return seq
}

func (m *shardMerger) releaseHeld() {
	m.held = emitFlushItems(m.next, m.held)
}

// pipedWorker is replay's single worker: it runs on the reader's goroutine
// and hands its records, in batches, to a shardMerger on a goroutine of its
// own that feeds the resolver, the orderer, the detector and the output, so
// that decoding and reporting overlap on two cores. It is a shardWorker
// without a dispatcher: the batches carry no packets, only records, each
// with its packet's position and the capture clock before that packet (what
// the tests' orderedWorker had released by then), so the merger makes the
// same calls on the back half, in the same order, as the worker would have
// made directly. The worker ends idle connections itself and orders what a flush
// makes before handing it on, so no record is marked as a flush. At most
// shardBatches batches are in flight: a slow back half holds the worker up
// instead of growing a queue.
type pipedWorker struct {
	*Worker
	rec *shardRecorder
	sw  *shardWorker
}

func newPipedWorker(opt Options) *pipedWorker {
	rec := &shardRecorder{}
	sw := &shardWorker{out: make(chan *shardBatch, shardBatches), free: make(chan *shardBatch, shardBatches)}
	for range shardBatches {
		sw.free <- &shardBatch{}
	}
	rec.b = <-sw.free
	return &pipedWorker{Worker: NewWorker(opt, rec, nil), rec: rec, sw: sw}
}

// Packet processes one packet and hands a full batch on.
func (p *pipedWorker) Packet(data []byte, ci gopacket.CaptureInfo, link layers.LinkType) {
	p.rec.pos++
	p.rec.prev = p.Worker.now
	p.Worker.Packet(data, ci, link)
	if len(p.rec.b.out) >= shardMaxPackets {
		p.send()
	}
}

func (p *pipedWorker) send() {
	p.sw.out <- p.rec.b
	p.rec.b = <-p.sw.free
}

// finish ends every connection and hands the last records on; the merger
// stops once it has handled them.
func (p *pipedWorker) finish() {
	p.rec.pos++
	p.rec.prev = p.Worker.now
	p.Worker.Flush()
	p.sw.out <- p.rec.b
	p.rec.b = nil
	close(p.sw.out)
}
