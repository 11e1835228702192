package sensor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/gopacket/layers"

	"github.com/tschsensor/tschsensor/detect"
	"github.com/tschsensor/tschsensor/sensor/output"
	"github.com/tschsensor/tschsensor/sensor/source"
)

// Defaults of LiveConfig.
const (
	// DefaultStatsInterval is how often a metric line goes to the output.
	DefaultStatsInterval = time.Minute
	// DefaultQueueLen bounds finished records waiting for the detector.
	DefaultQueueLen = 4096
	// DefaultEnqueueTimeout is how long a worker waits on a full record
	// queue before it drops the record: capture must not stall behind a
	// slow sink.
	DefaultEnqueueTimeout = 100 * time.Millisecond
	// liveBatch is how many packets a worker takes from one socket before
	// it looks at the next socket and its stop flag.
	liveBatch = 256
	// drainMax bounds how long a stopping worker keeps decoding what is
	// left in its ring.
	drainMax = 5 * time.Second
	// snapshotEvery is how often a worker publishes its counters.
	snapshotEvery = time.Second
	// orderEvery is how often the detector goroutine moves the watermark
	// on: releases ordered records and advances the detector's clock on a
	// quiet link.
	orderEvery = 100 * time.Millisecond
)

// LiveConfig configures live capture.
type LiveConfig struct {
	Options Options
	Detect  detect.Options
	Output  *output.Output
	// Interfaces to capture on; each worker opens one socket on each.
	Interfaces []string
	// Workers is the number of capture workers (default runtime.NumCPU()).
	Workers int
	// Capture holds the ring geometry, snap length, promiscuous mode and
	// filter; Iface and the fanout fields are set per socket.
	Capture source.AFPacketConfig
	// FilterExpr, when set, is a tcpdump expression compiled with
	// `tcpdump -ddd` into Capture.Filter; FilterFile names the output of
	// such a compilation made beforehand (for images without tcpdump). At
	// most one of them.
	FilterExpr string
	FilterFile string
	// FanoutGroup is the PACKET_FANOUT group id of the first interface;
	// interface i uses FanoutGroup+i (a group spans one device).
	FanoutGroup    int
	StatsInterval  time.Duration
	QueueLen       int
	EnqueueTimeout time.Duration
	PollTimeout    time.Duration
	Log            *slog.Logger
}

// maxWorkers bounds capture and replay workers.
const maxWorkers = 1024

// validate checks what the flags gave before anything is opened, and
// compiles or reads the filter.
func (c *LiveConfig) validate() error {
	switch {
	case len(c.Interfaces) == 0:
		return errors.New("live capture: no interface given")
	case c.Output == nil:
		return errors.New("live capture: no output")
	case c.Workers < 0 || c.Workers > maxWorkers:
		return fmt.Errorf("live capture: %d workers: want 1 to %d", c.Workers, maxWorkers)
	case c.FanoutGroup < 0 || c.FanoutGroup+len(c.Interfaces) > 0x10000:
		return fmt.Errorf("live capture: fanout group %d: want 0 to %d", c.FanoutGroup, 0x10000-len(c.Interfaces))
	case c.FilterExpr != "" && c.FilterFile != "":
		return errors.New("live capture: a filter expression and a filter file: give one")
	case c.StatsInterval < 0, c.QueueLen < 0, c.EnqueueTimeout < 0, c.PollTimeout < 0:
		return errors.New("live capture: negative interval or queue length")
	}
	switch {
	case c.FilterExpr != "":
		// Every interface is Ethernet-like in practice; a raw-IP interface
		// gets its own compilation.
		prog, err := source.CompileFilter(context.Background(), c.FilterExpr, layers.LinkTypeEthernet, c.Capture.SnapLen)
		if err != nil {
			return err
		}
		c.Capture.Filter = prog
	case c.FilterFile != "":
		prog, err := source.ReadFilterFile(c.FilterFile)
		if err != nil {
			return err
		}
		c.Capture.Filter = prog
	}
	return c.Options.validate()
}

func (c *LiveConfig) setDefaults() {
	if c.Workers <= 0 {
		c.Workers = runtime.NumCPU()
	}
	if c.StatsInterval <= 0 {
		c.StatsInterval = DefaultStatsInterval
	}
	if c.QueueLen <= 0 {
		c.QueueLen = DefaultQueueLen
	}
	if c.EnqueueTimeout <= 0 {
		c.EnqueueTimeout = DefaultEnqueueTimeout
	}
	if c.PollTimeout <= 0 {
		c.PollTimeout = source.DefaultPollTimeout
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
}

// ringSource is what a worker reads (see Ring).
type ringSource = source.Ring

// liveRecord is a finished call or file operation on its way from a worker
// to the detector.
type liveRecord struct {
	call *detect.Call
	file *detect.FileOp
	epm  *epmRecord
}

// epmRecord is an endpoint-mapper answer learnt by a worker.
type epmRecord struct {
	server netip.Addr
	port   uint16
	uuid   string
	t      time.Time
}

// chanRecorder is a worker's Recorder: it queues records for the detector
// goroutine, waiting at most timeout on a full queue.
type chanRecorder struct {
	ch      chan<- liveRecord
	timeout time.Duration
	timer   *time.Timer
	dropped *atomic.Uint64
	// flushing makes sends block: at shutdown the detector still drains
	// the queue, and a record lost then would be lost for no reason.
	flushing bool
}

func (r *chanRecorder) Call(c *detect.Call)   { r.send(liveRecord{call: c}) }
func (r *chanRecorder) File(f *detect.FileOp) { r.send(liveRecord{file: f}) }

// EPM queues an endpoint-mapper answer for the resolver before the detector.
func (r *chanRecorder) EPM(server netip.Addr, port uint16, uuid string, t time.Time) {
	r.send(liveRecord{epm: &epmRecord{server, port, uuid, t}})
}

func (r *chanRecorder) send(rec liveRecord) {
	select {
	case r.ch <- rec:
		return
	default:
	}
	if r.flushing {
		r.ch <- rec
		return
	}
	if r.timer == nil {
		r.timer = time.NewTimer(r.timeout)
	} else {
		r.timer.Reset(r.timeout)
	}
	select {
	case r.ch <- rec:
		r.timer.Stop()
	case <-r.timer.C:
		r.dropped.Add(1)
	}
}

// liveWorker is one capture worker: its sockets (one per interface), its
// Worker, and the counters it publishes for the stats reader.
type liveWorker struct {
	id    int
	socks []ringSource
	srcs  []packetSource // the sockets as the pipeline's sources
	buf   [1]source.Packet
	w     *Worker
	rec   *chanRecorder

	running atomic.Bool
	// clock is the capture time (unix ns) up to which the worker has
	// handed on its records: the time of its last packet, or on a quiet
	// link the time its idle tick reached; the maximum once it stopped.
	clock atomic.Int64
	mu    sync.Mutex // guards snap and err
	snap  Stats
	err   error
}

// Live captures on interfaces with one worker per fanout share and one
// detector behind them all.
type Live struct {
	cfg LiveConfig
	// budget is the memory budget shared out among the workers and the
	// resolver.
	budget  budgetSplit
	workers []*liveWorker
	records chan liveRecord
	wait    func(socks []ringSource, timeout time.Duration) error
	// now drives idle-connection expiry while no packet arrives; nil in
	// tests replaying old captures, whose packets carry their own time.
	now func() time.Time

	events    atomic.Uint64
	alerts    atomic.Uint64
	capturing atomic.Bool
	start     time.Time
	stopping  atomic.Bool
}

// NewLive opens every capture socket, so that a missing interface or
// privilege is reported before anything runs.
func NewLive(cfg LiveConfig) (*Live, error) {
	if err := cfg.validate(); err != nil {
		return nil, &ConfigError{err}
	}
	cfg.setDefaults()
	socks := make([][]ringSource, cfg.Workers)
	closeAll := func() {
		for _, ss := range socks {
			for _, s := range ss {
				s.Close()
			}
		}
	}
	for i, iface := range cfg.Interfaces {
		for w := range cfg.Workers {
			c := cfg.Capture
			c.Iface = iface
			c.Fanout = cfg.Workers > 1
			c.FanoutGroup = uint16(cfg.FanoutGroup + i)
			s, err := source.OpenRing(c)
			if err != nil {
				closeAll()
				return nil, err
			}
			socks[w] = append(socks[w], s)
		}
	}
	l := newLive(cfg, socks, source.WaitRings)
	l.now = time.Now
	return l, nil
}

// newLive builds the engine over opened sources.
func newLive(cfg LiveConfig, socks [][]ringSource, wait func([]ringSource, time.Duration) error) *Live {
	cfg.setDefaults()
	l := &Live{cfg: cfg, records: make(chan liveRecord, cfg.QueueLen), wait: wait, start: time.Now()}
	epm := NewEPMTable(0, 0)
	keys := newSessionKeyStore(maxSharedSessionKeys)
	opt := cfg.Options
	l.budget = splitBudget(opt.MemoryBudget, len(socks))
	opt.MemoryBudget = l.budget.perWorker
	for i, ss := range socks {
		lw := &liveWorker{id: i, socks: ss, snap: newStats()}
		for _, s := range ss {
			// A socket's link type is fixed when it is opened.
			lw.srcs = append(lw.srcs, ringPackets{s, s.LinkType()})
		}
		lw.rec = &chanRecorder{ch: l.records, timeout: cfg.EnqueueTimeout, dropped: cfg.Output.QueueDrops()}
		lw.w = NewWorker(opt, lw.rec, epm)
		// Channels of a session hash to any worker (multichannel).
		lw.w.smbKeys = keys
		l.workers = append(l.workers, lw)
	}
	return l
}

// LiveResult summarises a capture.
type LiveResult struct {
	Stats   Stats
	Detect  detect.Stats
	Kernel  source.KernelStats
	Elapsed time.Duration
	// Delivery is the output's count at the end of Run; sinks closed later
	// may still change it (read Output.Delivery after closing them).
	Delivery output.Delivery
	// Err is set when every worker stopped on an error.
	Err error
}

// Run captures until ctx ends or every worker failed, then flushes: calls
// still open are reported with outcome unknown.
func (l *Live) Run(ctx context.Context) LiveResult {
	// Events are encoded and written on a goroutine of their own, which
	// publishes the counts it wrote.
	q := newEmitQueue(l.cfg.Output, l.cfg.Options.PanicHook)
	q.written = l.syncCounts
	be := newBackendEmit(l.cfg.Options, l.cfg.Detect, l.cfg.Output, q.Emit)
	be.budget = l.budget
	var wg sync.WaitGroup
	allDone := make(chan struct{})
	for _, lw := range l.workers {
		lw.running.Store(true)
	}
	l.capturing.Store(true)
	for _, lw := range l.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l.runWorker(lw)
		}()
	}
	go func() {
		wg.Wait()
		close(allDone)
	}()
	go func() {
		select {
		case <-ctx.Done():
		case <-allDone:
		}
		l.stopping.Store(true)
	}()
	go func() {
		<-allDone
		close(l.records)
	}()
	l.detect(be, q)
	l.capturing.Store(false)
	be.panics += q.panics.Load()

	var res LiveResult
	var errs []error
	var workers []*Stats
	for _, lw := range l.workers {
		lw.mu.Lock()
		workers = append(workers, &lw.snap)
		if lw.err != nil {
			errs = append(errs, lw.err)
		}
		lw.mu.Unlock()
		for _, s := range lw.socks {
			ks, _ := s.Stats()
			res.Kernel.Add(ks)
		}
	}
	res.Delivery = l.cfg.Output.Delivery()
	res.Stats = be.stats(workers)
	res.Detect = be.det.Stats()
	res.Elapsed = time.Since(l.start)
	if len(errs) == len(l.workers) && ctx.Err() == nil {
		res.Err = errors.Join(errs...)
	}
	return res
}

// syncCounts publishes the output's counts for Metrics; it runs where the
// output runs (the output stage's goroutine, or after it ended).
func (l *Live) syncCounts() {
	l.events.Store(l.cfg.Output.Events)
	l.alerts.Store(l.cfg.Output.Alerts)
}

// detect runs the detector on one goroutine: it is single-threaded, and
// cross-connection correlation needs every worker's records in one place.
// Records go through the resolver, then are put in capture-time order
// (orderer) up to the watermark all workers reached. Events go to the
// output stage q, handed on whenever the detector has nothing else to do,
// so that none waits for a batch to fill.
func (l *Live) detect(be *backend, q *emitQueue) {
	tick := time.NewTicker(l.cfg.StatsInterval)
	defer tick.Stop()
	otick := time.NewTicker(orderEvery)
	defer otick.Stop()
	res, ord, det := be.res, be.ord, be.det
	handle := func(r liveRecord) {
		switch {
		case r.call != nil:
			res.Call(r.call)
		case r.file != nil:
			res.File(r.file)
		case r.epm != nil:
			res.EPM(r.epm.server, r.epm.port, r.epm.uuid, r.epm.t)
		}
	}
	// catchUp reads the watermark, takes every record queued before it was
	// read (a worker queues its records before it moves its clock), and
	// releases what the watermark allows.
	catchUp := func() bool {
		wm := l.watermark()
		for range len(l.records) {
			r, ok := <-l.records
			if !ok {
				return false
			}
			handle(r)
		}
		if wm.IsZero() {
			return true
		}
		ord.Release(wm)
		det.Advance(wm.Add(-ord.delay))
		return true
	}
	finish := func() {
		be.flush()
		// The last metric line counts every event: written after the
		// output stage wrote the rest and ended.
		q.close()
		l.syncCounts()
		l.cfg.Output.Emit(l.metricEvent())
		l.syncCounts()
	}
	res.MaxHeldBytes = int(l.budget.held)
	for {
		select {
		case r, ok := <-l.records:
			if !ok {
				finish()
				return
			}
			handle(r)
			if len(l.records) == 0 {
				q.flush()
			}
		case <-otick.C:
			if !catchUp() {
				finish()
				return
			}
			q.flush()
		case <-tick.C:
			q.Emit(l.metricEvent())
			q.flush()
		}
	}
}

// watermark is the capture time every worker has reached; zero while some
// worker has not reached any.
func (l *Live) watermark() time.Time {
	wm := int64(math.MaxInt64)
	for _, lw := range l.workers {
		wm = min(wm, lw.clock.Load())
	}
	if wm <= 0 {
		return time.Time{}
	}
	// MaxInt64 when every worker stopped: all their records are queued.
	return time.Unix(0, wm)
}

func (l *Live) runWorker(lw *liveWorker) {
	defer func() {
		if p := recover(); p != nil {
			// A bug in a decoder must not take the other workers down;
			// it is counted and the worker shows as stopped.
			lw.mu.Lock()
			lw.err = fmt.Errorf("worker %d: panic: %v", lw.id, p)
			lw.mu.Unlock()
			l.cfg.Log.Error("capture worker stopped", "worker", lw.id, "panic", p)
		}
		for _, s := range lw.socks {
			s.Close()
		}
		lw.clock.Store(math.MaxInt64)
		lw.running.Store(false)
	}()
	err := l.capture(lw)
	for _, s := range lw.socks {
		s.Close()
	}
	lw.rec.flushing = true
	lw.w.Flush()
	// Its records are all queued: it no longer holds the watermark back.
	lw.clock.Store(math.MaxInt64)
	lw.publish()
	if err != nil {
		lw.mu.Lock()
		lw.err = fmt.Errorf("worker %d: %w", lw.id, err)
		lw.mu.Unlock()
		l.cfg.Log.Error("capture worker stopped", "worker", lw.id, "err", err)
	}
}

// capture is a worker's loop: drain every socket, sleep in poll when all
// are empty, publish counters about once a second.
func (l *Live) capture(lw *liveWorker) error {
	next := time.Now().Add(snapshotEvery)
	var drainUntil time.Time
	for {
		if drainUntil.IsZero() && l.stopping.Load() {
			// Packets already in the ring, and those in a block the
			// kernel has not handed over yet, are still decoded: the last
			// packets before a stop are as likely as any to matter.
			drainUntil = time.Now().Add(2*l.blockTimeout() + l.cfg.PollTimeout/10)
		}
		n := 0
		for _, s := range lw.srcs {
			k, _, _ := pump(s, lw.w, lw.buf[:], liveBatch) // a ring never ends
			n += k
		}
		if n > 0 {
			lw.clock.Store(lw.w.now.UnixNano())
		}
		if !drainUntil.IsZero() {
			// Stop once the ring is empty after the last block was
			// handed over, or at the latest drainMax later while traffic
			// keeps coming.
			if now := time.Now(); now.After(drainUntil) && n == 0 || now.After(drainUntil.Add(drainMax)) {
				return nil
			}
		}
		if n == 0 {
			timeout := l.cfg.PollTimeout
			if !drainUntil.IsZero() {
				timeout = min(timeout, max(time.Until(drainUntil), time.Millisecond))
			}
			if err := l.wait(lw.socks, timeout); err != nil {
				return err
			}
			if l.now != nil {
				// No packet for a while: the capture clock moves on with
				// the wall clock (the kernel stamps packets with it), so
				// idle connections end and the watermark passes records
				// on a quiet link.
				now := l.now()
				lw.w.Tick(now)
				lw.clock.Store(max(lw.w.now.UnixNano(), now.UnixNano()))
			}
		}
		if now := time.Now(); now.After(next) {
			lw.publish()
			next = now.Add(snapshotEvery)
		}
	}
}

func (l *Live) blockTimeout() time.Duration {
	if l.cfg.Capture.BlockTimeout > 0 {
		return l.cfg.Capture.BlockTimeout
	}
	return source.DefaultBlockTimeout
}

// publish copies the worker's counters for readers on other goroutines.
func (lw *liveWorker) publish() {
	s := newStats()
	s.Merge(lw.w.Stats())
	lw.mu.Lock()
	lw.snap = s
	lw.mu.Unlock()
}

// Healthy says whether every worker is capturing, and if not why.
func (l *Live) Healthy() (bool, string) {
	if !l.capturing.Load() {
		return false, "not capturing"
	}
	for _, lw := range l.workers {
		if !lw.running.Load() {
			lw.mu.Lock()
			err := lw.err
			lw.mu.Unlock()
			if err != nil {
				return false, err.Error()
			}
			return false, fmt.Sprintf("worker %d stopped", lw.id)
		}
	}
	// NATS down is not unhealthy: records are spooled and re-sent; the
	// body says so, and metrics carry tschsensor_nats_connected.
	switch c := l.cfg.Output.Delivery().NATSConnected; {
	case c == nil:
		return true, "capturing"
	case *c:
		return true, "capturing; nats connected"
	default:
		return true, "capturing; nats disconnected, spooling"
	}
}

// SocketMetric is one capture socket's kernel counters.
type SocketMetric struct {
	Iface string `json:"interface"`
	source.KernelStats
}

// WorkerMetric is one worker's counters.
type WorkerMetric struct {
	Worker         int               `json:"worker"`
	Running        bool              `json:"running"`
	Error          string            `json:"error,omitempty"`
	Sockets        []SocketMetric    `json:"sockets"`
	Packets        uint64            `json:"packets"`
	Bytes          uint64            `json:"bytes"`
	TCPPackets     uint64            `json:"tcp_packets"`
	Connections    uint64            `json:"connections"`
	SMBConnections uint64            `json:"smb_connections"`
	RPCConnections uint64            `json:"rpc_connections"`
	TschCalls      uint64            `json:"tsch_calls"`
	TschSummarised uint64            `json:"tsch_summarised"`
	FileOps        uint64            `json:"file_ops"`
	Gaps           uint64            `json:"tcp_gaps"`
	Anomalies      map[string]uint64 `json:"anomalies,omitempty"`
	// The flow verdict table and the memory budget.
	Flows       map[string]uint64 `json:"flows,omitempty"`        // by verdict
	FlowPackets map[string]uint64 `json:"flow_packets,omitempty"` // by verdict
	FlowsActive uint64            `json:"flows_active"`
	Evictions   map[string]uint64 `json:"evictions,omitempty"` // by reason
	Memory      MemStats          `json:"memory"`
}

// LiveMetric is the "metric" of a tschsensor.stats event and what
// /metrics serves.
type LiveMetric struct {
	Interfaces    []string           `json:"interfaces"`
	UptimeSeconds float64            `json:"uptime_seconds"`
	Healthy       bool               `json:"healthy"`
	Kernel        source.KernelStats `json:"kernel"`
	Workers       []WorkerMetric     `json:"workers"`
	Events        uint64             `json:"events"`
	Alerts        uint64             `json:"alerts"`
	// DroppedEvents is Delivery.DroppedTotal: every record lost, for
	// whatever reason; DroppedRecords is Delivery.Dropped.Queue.
	DroppedEvents  uint64 `json:"dropped_events"`
	DroppedRecords uint64 `json:"dropped_records"`
	QueueLen       int    `json:"queue_len"`
	// Counters are all workers' counters and the delivery section: the
	// object replay --stats-file writes, inline.
	Counters
}

// Metrics takes a snapshot of every counter. It is safe to call from any
// goroutine; worker counters are at most about a second old.
func (l *Live) Metrics() LiveMetric {
	m := LiveMetric{
		Interfaces: l.cfg.Interfaces,
		Events:     l.events.Load(),
		Alerts:     l.alerts.Load(),
		QueueLen:   len(l.records),
	}
	del := l.cfg.Output.Delivery()
	m.DroppedEvents, m.DroppedRecords = del.DroppedTotal, del.Dropped.Queue
	m.UptimeSeconds = time.Since(l.start).Seconds()
	m.Healthy, _ = l.Healthy()
	total := newStats()
	for _, lw := range l.workers {
		wm := WorkerMetric{Worker: lw.id, Running: lw.running.Load()}
		lw.mu.Lock()
		s := &lw.snap
		total.Merge(s)
		wm.Packets, wm.Bytes, wm.TCPPackets = s.Packets, s.Bytes, s.TCPPackets
		wm.Connections, wm.SMBConnections, wm.RPCConnections = s.Connections, s.SMBConnections, s.RPCConnections
		wm.TschCalls, wm.FileOps, wm.Gaps = s.TschCalls, s.FileOps, s.Gaps
		wm.TschSummarised = s.TschSummarised
		if len(s.Anomalies) > 0 {
			wm.Anomalies = make(map[string]uint64, len(s.Anomalies))
			for k, v := range s.Anomalies {
				wm.Anomalies[k] = v
			}
		}
		wm.Flows, wm.FlowPackets = make(map[string]uint64), make(map[string]uint64)
		for v := range numVerdicts {
			wm.Flows[verdict(v).String()] = s.Flow.Flows[v]
			wm.FlowPackets[verdict(v).String()] = s.Flow.Packets[v]
		}
		wm.FlowsActive, wm.Memory = s.Flow.Active, s.Memory
		if len(s.Evictions) > 0 {
			wm.Evictions = make(map[string]uint64, len(s.Evictions))
			for k, v := range s.Evictions {
				wm.Evictions[k] = v
			}
		}
		if lw.err != nil {
			wm.Error = lw.err.Error()
		}
		lw.mu.Unlock()
		for _, s := range lw.socks {
			ks, _ := s.Stats()
			wm.Sockets = append(wm.Sockets, SocketMetric{Iface: s.Iface(), KernelStats: ks})
			m.Kernel.Add(ks)
		}
		m.Workers = append(m.Workers, wm)
	}
	oc := OutputCounters{Events: m.Events, Alerts: m.Alerts}
	if r := l.cfg.Detect.Rules; r != nil {
		oc.Suppressed = r.Load().Suppressions()
	}
	total.MemoryBudget, total.ResolverBudget = l.budget.total, l.budget.held
	m.Counters = total.Counters(oc, del)
	return m
}

func (l *Live) metricEvent() *detect.Event {
	now := time.Now().UTC()
	obs := l.cfg.Detect.Observer
	return &detect.Event{
		Timestamp: now.Format("2006-01-02T15:04:05.000000000Z07:00"),
		Event: detect.EventMeta{
			Kind: "metric",
			// Unique per line: metrics are never de-duplicated.
			ID:      fmt.Sprintf("stats-%s-%d", obs, now.UnixNano()),
			Dataset: "tschsensor.stats",
		},
		Observer: detect.Observer{Name: obs, Type: "sensor", Product: "tschsensor"},
		Metric:   l.Metrics(),
	}
}
