package sensor

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/ip4defrag"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/reassembly"

	"github.com/tschsensor/tschsensor/detect"
	"github.com/tschsensor/tschsensor/dissect"
)

// Defaults of Options. Each bounds memory or time that hostile or broken
// traffic could otherwise grow without limit.
const (
	// DefaultMaxMessage bounds one buffered SMB message or DCE-RPC PDU per
	// direction; larger ones are skipped (file data) or cut and counted.
	DefaultMaxMessage = 1 << 20
	// DefaultMaxStub bounds a call's reassembled stub (request or response).
	DefaultMaxStub = 4 << 20
	// DefaultMaxStubTotal bounds the stub bytes all of a worker's calls in
	// flight may hold together: hostile clients opening many calls on many
	// channels cannot grow memory past it.
	DefaultMaxStubTotal = 256 << 20
	// DefaultMaxCalls bounds calls awaiting their response per RPC channel.
	DefaultMaxCalls = 256
	// DefaultMaxFiles bounds open SMB files and pipes tracked per connection.
	DefaultMaxFiles = 4096
	// DefaultMaxPending bounds SMB requests awaiting their response per connection.
	DefaultMaxPending = 4096
	// DefaultIdleTimeout ends connections silent for this long (capture time).
	DefaultIdleTimeout = 5 * time.Minute
	// DefaultMaxPagesTotal and DefaultMaxPagesPerConn bound out-of-order
	// TCP data held by the reassembler (pages of about 1900 bytes).
	DefaultMaxPagesTotal   = 65536
	DefaultMaxPagesPerConn = 512
	// DefaultMaxConnections bounds TCP connections followed per worker;
	// past it new ones are ignored (counted) and idle ones expire sooner.
	DefaultMaxConnections = 1 << 18
	// DefaultGapWait is how long (capture time) data waits behind a missing
	// TCP segment before the gap is skipped: retransmissions and reordering
	// fill gaps within milliseconds, a segment lost by the SPAN port never.
	DefaultGapWait = 2 * time.Second
	// pressureIdle is the idle timeout while over MaxConnections.
	pressureIdle = 30 * time.Second
	// DefaultHuntLimit is how far into a mid-stream connection the sensor
	// looks for an SMB or DCE-RPC header before it ignores the connection.
	DefaultHuntLimit = 256 << 10
	// ctxRing is the number of packet contexts kept for frame numbers of
	// out-of-order data; data buffered longer than that many packets is
	// attributed to a later frame.
	ctxRing = 1 << 14
)

// Options configures packet processing.
type Options struct {
	MaxMessage   int
	MaxStub      int
	MaxStubTotal int
	MaxCalls     int
	// MaxCallsTotal bounds calls awaiting their response on all of a
	// worker's channels (default: what 1/8 of the budget pays for at
	// 1 KiB each; callcap.go).
	MaxCallsTotal int
	MaxFiles      int
	// MaxFilesTotal bounds open SMB files and pipes on all of a worker's
	// connections, and connected trees as many (default: what 1/8 of the
	// budget pays for at 256 bytes each; filecap.go).
	MaxFilesTotal int
	// MaxSessionsTotal bounds SMB sessions on all of a worker's
	// connections (default: what 1/8 of the budget pays for at 1 KiB
	// each; filecap.go).
	MaxSessionsTotal int
	MaxPending       int
	// MaxPendingTotal bounds SMB requests awaiting their response on all
	// of a worker's connections (default: what 1/8 of the budget pays
	// for at 256 bytes each; pendcap.go).
	MaxPendingTotal int
	IdleTimeout     time.Duration
	MaxPagesTotal   int
	MaxPagesPerConn int
	HuntLimit       int
	MaxConnections  int
	// MaxFlows bounds the flow verdict table of each worker (default: what
	// fits in an eighth of MemoryBudget).
	MaxFlows int
	// MemoryBudget bounds the sensor's state (bytes; default
	// DefaultMemoryBudget). Replay and Live share it out among their
	// workers and the resolver; a Worker made with NewWorker takes all of
	// it. MaxPagesTotal, MaxStubTotal and MaxFlows default to shares of it.
	MemoryBudget int64
	// Tsch bounds what MS-TSCH decoding keeps: task XML bytes (default
	// 64 KiB) and list entries.
	Tsch dissect.TschOptions
	// PanicHook, when set, sees what a recovered panic carried: tests turn
	// it back into a failure, the binary prints it once.
	PanicHook func(any)
	// Credentials open sealed DCE-RPC and SMB3 when they match.
	Credentials *dissect.Credentials
	// KerberosKeys (keytabs, key lines of the credentials) open Kerberos
	// tickets, hence sealed DCE-RPC and SMB3 of Kerberos sessions.
	KerberosKeys *dissect.KerberosKeys
	// Warn, when set, is told once per worker of input the sensor cannot
	// see through: packets cut by the capture's snap length, link types it
	// does not decode. The counters say how many.
	Warn func(msg string)
}

// validate refuses negative bounds (zero means the default).
func (o *Options) validate() error { return o.checkBounds(false) }

// checkBounds says what is wrong with each bound, once: negative, or (when
// explicit, for the limits a flag sets) zero too. Bounds are named as their
// flags are, and their values said in the flags' units.
func (o *Options) checkBounds(explicit bool) error {
	var errs []error
	check := func(name string, v int64, flag bool, shown any) {
		switch {
		case explicit && flag && v <= 0:
			errs = append(errs, fmt.Errorf("%s must be positive, got %v", name, shown))
		case v < 0:
			errs = append(errs, fmt.Errorf("%s must not be negative, got %v", name, shown))
		}
	}
	for _, b := range []struct {
		name string
		v    int
		flag bool
	}{{"max-message", o.MaxMessage, true}, {"max-stub", o.MaxStub, true}, {"max stub total", o.MaxStubTotal, false},
		{"max-calls", o.MaxCalls, true}, {"max calls total", o.MaxCallsTotal, false}, {"max-files", o.MaxFiles, true}, {"max files total", o.MaxFilesTotal, false}, {"max sessions total", o.MaxSessionsTotal, false}, {"max pending", o.MaxPending, false}, {"max pending total", o.MaxPendingTotal, false},
		{"max pages total", o.MaxPagesTotal, false}, {"max pages per connection", o.MaxPagesPerConn, false},
		{"hunt limit", o.HuntLimit, false}, {"max connections", o.MaxConnections, false},
		{"max-xml", o.Tsch.XMLLimit, true}, {"max flows", o.MaxFlows, false}} {
		check(b.name, int64(b.v), b.flag, b.v)
	}
	check("idle-timeout", int64(o.IdleTimeout), true, o.IdleTimeout)
	budget := fmt.Sprintf("%d bytes", o.MemoryBudget)
	if o.MemoryBudget%(1<<20) == 0 {
		budget = fmt.Sprintf("%d MiB", o.MemoryBudget>>20)
	}
	check("memory-budget", o.MemoryBudget, true, budget)
	return errors.Join(errs...)
}

func (o *Options) setDefaults() {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	if o.MemoryBudget <= 0 {
		o.MemoryBudget = DefaultMemoryBudget
	}
	def(&o.MaxFlows, min(DefaultMaxFlows, flowsForBytes(o.MemoryBudget/flowShare)))
	def(&o.MaxPagesTotal, int(min(DefaultMaxPagesTotal, o.MemoryBudget/pageShare/pageCost)))
	def(&o.MaxStubTotal, int(min(DefaultMaxStubTotal, o.MemoryBudget/stubShare)))
	def(&o.MaxMessage, DefaultMaxMessage)
	def(&o.MaxStub, DefaultMaxStub)
	def(&o.MaxCalls, DefaultMaxCalls)
	def(&o.MaxCallsTotal, int(o.MemoryBudget/callShare/callCost))
	def(&o.MaxFiles, DefaultMaxFiles)
	def(&o.MaxFilesTotal, int(o.MemoryBudget/fileShare/fileCost))
	def(&o.MaxSessionsTotal, int(o.MemoryBudget/fileShare/sessionCost))
	def(&o.MaxPending, DefaultMaxPending)
	def(&o.MaxPendingTotal, int(o.MemoryBudget/pendShare/pendCost))
	def(&o.MaxPagesPerConn, DefaultMaxPagesPerConn)
	def(&o.HuntLimit, DefaultHuntLimit)
	def(&o.MaxConnections, int(min(DefaultMaxConnections, o.MemoryBudget/connShare/connCost)))
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = DefaultIdleTimeout
	}
}

// Recorder receives the records a worker finishes.
type Recorder interface {
	Call(*detect.Call)
	File(*detect.FileOp)
}

// pktCtx carries a packet's capture info and frame number through the
// reassembler.
type pktCtx struct {
	ci    gopacket.CaptureInfo
	frame uint64
}

func (p *pktCtx) GetCaptureInfo() gopacket.CaptureInfo { return p.ci }

// Worker decodes packets of one shard: TCP reassembly, SMB and DCE-RPC state.
// It is not safe for concurrent use; run one per shard.
type Worker struct {
	opt    Options
	rec    Recorder
	buf    *flushBuffer
	asm    *reassembly.Assembler
	defrag *ip4defrag.IPv4Defragmenter
	stats  Stats
	ring   []pktCtx
	frame  uint64
	file   string
	seq    uint64
	tcp    layers.TCP
	f      frame
	now    time.Time
	// flush says when Packet next ends idle connections.
	flush flushClock
	epm   *EPMTable
	// active counts connections the reassembler holds; pressure is set
	// when it passed MaxConnections.
	active   int
	pressure bool
	// Connections oldest first (see conncap.go); connOver is set when a new
	// one passed MaxConnections.
	connHead, connTail *conn
	connOver           bool
	// stubBytes is what calls in flight hold against MaxStubTotal.
	stubBytes int
	workerBounds
	// smbKeys are SMB3 session keys shared by the connections (channels)
	// of a session, and by the workers of one replay or capture (see
	// keystore.go); keyWait, when set, waits until the other workers have
	// processed every packet before the current one.
	smbKeys *sessionKeyStore
	keyWait func()
	// external is set when a dispatcher in front of several workers
	// decides when idle connections end (see shard.go); seqHook then sees
	// every record sequence number as it is handed out (done false) and
	// as a call that will never be handed on is dropped (done true).
	external bool
	seqHook  func(seq uint64, done bool)

	mem    memBudget
	warned uint8 // warnings already given (warnSnap, warnLink)
	// The flow verdict table and the packet being gated through it.
	flows   flowTable
	key     flowKey
	th      tcpHead
	pend    flowPending
	rearm   bool
	evictFn func(string)
	synTCP  layers.TCP
	synBuf  [20 + flowPrefix]byte
	// env is what the connections' state machines use of the worker.
	env connEnv
}

// NewWorker returns a worker handing records to rec. epm may be shared by
// workers; it is safe for concurrent use.
func NewWorker(opt Options, rec Recorder, epm *EPMTable) *Worker {
	opt.setDefaults()
	w := &Worker{opt: opt, stats: newStats(), ring: make([]pktCtx, ctxRing), defrag: ip4defrag.NewIPv4Defragmenter(), epm: epm,
		flows: newFlowTable(opt.MaxFlows)}
	w.evictFn = w.evicted
	w.mem.limit = opt.MemoryBudget
	w.buf = &flushBuffer{next: rec}
	w.rec = w.buf
	if er, ok := rec.(EPMRecorder); ok {
		w.rec = epmFlushBuffer{w.buf, er}
	}
	if w.epm == nil {
		w.epm = NewEPMTable(0, 0)
	}
	w.env = w.newConnEnv()
	pool := reassembly.NewStreamPool(&streamFactory{w: w})
	w.asm = reassembly.NewAssembler(pool)
	w.asm.MaxBufferedPagesTotal = opt.MaxPagesTotal
	w.asm.MaxBufferedPagesPerConnection = opt.MaxPagesPerConn
	return w
}

// SetFile starts a new capture file: frame numbers restart at 1.
func (w *Worker) SetFile(name string) {
	w.file = name
	w.frame = 0
}

// Stats returns the worker's counters.
func (w *Worker) Stats() *Stats {
	w.stats.Flow.Active = uint64(w.flows.n)
	w.notePeak()
	w.stats.Memory = MemStats{Budget: w.mem.limit, Used: w.memUsed(), Peak: w.mem.peak}
	return &w.stats
}

// AnomalyPanic names the count of packets whose processing panicked: a bug,
// caught at the worker boundary so that one hostile packet cannot stop the
// sensor. Tests and fuzzing demand it stays zero.
const AnomalyPanic = "bug_panic_recovered"

// Packet processes one packet. data may be reused by the caller afterwards.
func (w *Worker) Packet(data []byte, ci gopacket.CaptureInfo, link layers.LinkType) {
	defer w.recoverPanic()
	w.packet(data, ci, link)
	// Idle connections end on capture time, checked after every packet
	// whatever it was; a dispatcher in front of several workers makes the
	// same decision with a flushClock of its own. flush.due is called
	// here rather than through a method of the worker: one call per packet.
	if !w.external && w.flush.due(w.now) {
		w.flushIdle()
	}
}

// recoverPanic counts a panic of the packet or flush path.
func (w *Worker) recoverPanic() {
	if r := recover(); r != nil {
		w.stats.anomaly(AnomalyPanic)
		if w.buf.on {
			w.buf.release() // a flush was cut short: deliver what it made
		}
		if w.opt.PanicHook != nil {
			w.opt.PanicHook(r)
		}
	}
}

func (w *Worker) packet(data []byte, ci gopacket.CaptureInfo, link layers.LinkType) {
	w.frame++
	w.stats.Packets++
	w.stats.Bytes += uint64(ci.Length)
	if w.stats.FirstTime.IsZero() {
		w.stats.FirstTime = ci.Timestamp
	}
	if ci.Timestamp.After(w.now) {
		w.now = ci.Timestamp
		w.stats.LastTime = ci.Timestamp
	}
	switch decodeFrame(data, link, &w.f) {
	case decTCP:
	case decNotTCP:
		return
	case decMalformed:
		w.stats.anomaly("malformed_frame")
		return
	case decUnsupportedLink:
		w.stats.anomaly("unsupported_link_type")
		w.warnOnce(warnLink, "%s: link type %d is not supported: its packets are skipped (counted as unsupported_link_type)", w.file, link)
		return
	case decIPv6Fragment:
		w.stats.anomaly("ipv6_fragment_unsupported")
		return
	}
	if ci.CaptureLength < ci.Length {
		// The capture's snap length cut the frame: TCP payloads are
		// incomplete, and what follows in the stream looks like gaps.
		w.stats.anomaly("capture_truncated")
		w.warnOnce(warnSnap, "%s: frames cut by the capture's snap length (%d of %d bytes kept): TCP payloads are incomplete and SMB/DCE-RPC cannot be followed; capture with a snap length of 0 or 65535 (counted as capture_truncated)",
			w.file, ci.CaptureLength, ci.Length)
	}
	if w.f.fragment && !w.reassembleIPv4(ci.Timestamp) {
		return
	}
	if !parseTCPHead(w.f.tcp, &w.th) {
		w.stats.anomaly("malformed_tcp")
		return
	}
	w.stats.TCPPackets++
	if !w.gate(&w.th, ci.Timestamp.UnixNano()) {
		return
	}
	if err := w.tcp.DecodeFromBytes(w.f.tcp, gopacket.NilDecodeFeedback); err != nil {
		w.stats.anomaly("malformed_tcp")
		return
	}
	var net gopacket.Flow
	if w.f.v6 {
		net = gopacket.NewFlow(layers.EndpointIPv6, w.f.src, w.f.dst)
	} else {
		net = gopacket.NewFlow(layers.EndpointIPv4, w.f.src, w.f.dst)
	}
	pc := &w.ring[w.frame%ctxRing]
	pc.ci, pc.frame = ci, w.frame
	if w.pend.on {
		w.inject(net, pc)
	}
	w.asm.AssembleWithContext(net, &w.tcp, pc)
	w.rearm = false
	if w.connOver {
		w.evictConns(pc)
	}
}

func (w *Worker) reassembleIPv4(ts time.Time) bool {
	// The defragmenter keeps fragments until the datagram is whole, and the
	// packet's bytes belong to the source: decode a copy.
	var ip layers.IPv4
	if err := ip.DecodeFromBytes(append([]byte(nil), w.f.ip...), gopacket.NilDecodeFeedback); err != nil {
		w.stats.anomaly("malformed_ipv4_fragment")
		return false
	}
	out, err := w.defrag.DefragIPv4WithTimestamp(&ip, ts)
	if err != nil {
		w.stats.anomaly("ipv4_defrag_error")
		return false
	}
	if out == nil {
		return false
	}
	w.f.tcp = out.Payload
	return true
}

// flushClock schedules idle flushes on capture time, about once a second
// and not at the first packet. A single worker and the dispatcher in front
// of several take the same decisions with it, so that sharded replay ends
// the same connections at the same packets.
type flushClock struct {
	next time.Time // zero before the first packet
}

// due says whether a flush is due at now and, if so, schedules the next.
// Called for every packet: one comparison, no time arithmetic.
func (c *flushClock) due(now time.Time) bool {
	if now.Before(c.next) {
		return false
	}
	first := c.next.IsZero()
	c.next = now.Add(time.Second)
	return !first
}

// flushIdle ends connections idle at w.now and skips old gaps.
func (w *Worker) flushIdle() {
	idle := w.opt.IdleTimeout
	if w.pressure {
		idle = min(idle, pressureIdle)
		w.pressure = false
	}
	w.buf.hold()
	w.asm.FlushWithOptions(reassembly.FlushOptions{T: w.now.Add(-DefaultGapWait), TC: w.now.Add(-idle)})
	w.buf.release()
	w.expireFlows()
	w.defrag.DiscardOlderThan(w.now.Add(-30 * time.Second))
}

// Tick moves a quiet worker's clock to now so that idle connections end:
// without packets the capture clock stands still. Live capture calls it when
// the ring has been empty for a while; replay never does.
func (w *Worker) Tick(now time.Time) {
	if !w.now.IsZero() && now.After(w.now) {
		w.now = now
		if w.flush.due(w.now) {
			w.flushIdle()
		}
	}
}

// Flush ends every connection: calls still waiting for a response are
// reported with outcome unknown.
func (w *Worker) Flush() {
	defer w.recoverPanic()
	w.buf.hold()
	w.asm.FlushAll()
	w.buf.release()
}

func (w *Worker) nextSeq() uint64 {
	w.seq++
	if w.seqHook != nil {
		w.seqHook(w.seq, false)
	}
	return w.seq
}

// dropSeq says that the record numbered seq will not be handed on.
func (w *Worker) dropSeq(seq uint64) {
	if w.seqHook != nil {
		w.seqHook(seq, true)
	}
}

func addrOf(e gopacket.Endpoint) netip.Addr {
	a, _ := netip.AddrFromSlice(e.Raw())
	return a.Unmap()
}

// Warnings given once per worker.
const (
	warnSnap = 1 << iota
	warnLink
)

func (w *Worker) warnOnce(which uint8, format string, args ...any) {
	if w.warned&which != 0 || w.opt.Warn == nil {
		return
	}
	w.warned |= which
	w.opt.Warn(fmt.Sprintf(format, args...))
}
