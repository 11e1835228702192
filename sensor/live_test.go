package sensor

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/tschsensor/tschsensor/detect"
	"github.com/tschsensor/tschsensor/internal/syncbuf"
	"github.com/tschsensor/tschsensor/internal/testpcap"
	"github.com/tschsensor/tschsensor/sensor/output"
	"github.com/tschsensor/tschsensor/sensor/source"
)

// fileRing is a ringSource over packets read from a capture: the test's
// stand-in for an AF_PACKET socket in a fanout group.
type fileRing struct {
	link    layers.LinkType
	pkts    []filePkt
	next    int
	served  atomic.Uint64
	drained chan struct{}
	once    sync.Once
	closed  atomic.Bool
}

type filePkt struct {
	data []byte
	ci   gopacket.CaptureInfo
}

func (r *fileRing) Next() ([]byte, gopacket.CaptureInfo, bool) {
	if r.next >= len(r.pkts) {
		r.once.Do(func() { close(r.drained) })
		return nil, gopacket.CaptureInfo{}, false
	}
	p := r.pkts[r.next]
	r.next++
	r.served.Add(1)
	// The ring's memory is reused once the worker moves on: hand out a
	// copy that the next call scribbles over, as the kernel would.
	buf := slices.Clone(p.data)
	return buf, p.ci, true
}

func (r *fileRing) LinkType() layers.LinkType { return r.link }
func (r *fileRing) Iface() string             { return "file0" }
func (r *fileRing) Stats() (source.KernelStats, error) {
	n := r.served.Load()
	return source.KernelStats{Packets: n}, nil
}
func (r *fileRing) Close() error { r.closed.Store(true); return nil }

// flowShard hashes a packet the way PACKET_FANOUT_HASH does for the
// purpose that matters: both directions of a connection to one shard.
func flowShard(data []byte, link layers.LinkType, n int) int {
	p := gopacket.NewPacket(data, link, gopacket.DecodeOptions{Lazy: true, NoCopy: true})
	var h uint64
	if nl := p.NetworkLayer(); nl != nil {
		h = nl.NetworkFlow().FastHash()
		if tl := p.TransportLayer(); tl != nil {
			h ^= tl.TransportFlow().FastHash()
		}
	}
	return int(h % uint64(n))
}

// shardFile reads a capture into n rings, sharded by flow.
func shardFile(t *testing.T, name string, n int) []*fileRing {
	t.Helper()
	rings := make([]*fileRing, n)
	for i := range rings {
		rings[i] = &fileRing{drained: make(chan struct{})}
	}
	eachPacket(t, name, func(_ int, data []byte, ci gopacket.CaptureInfo, link layers.LinkType) {
		r := rings[flowShard(data, link, n)]
		r.link = link
		r.pkts = append(r.pkts, filePkt{slices.Clone(data), ci})
	})
	return rings
}

// callKey is what must agree between replay and live: the fields an
// analyst acts on, not ids or frame numbers (live has no file).
func callKeys(t *testing.T, out []byte) []string {
	t.Helper()
	var keys []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		var ev struct {
			Event               struct{ Kind, Action, Outcome string }
			Source, Destination struct {
				IP string
			}
			DCERPC struct{ Interface struct{ Name string } } `json:"dcerpc"`
			Tsch   struct{ Task struct{ Path string } }
			Rule   struct{ ID string }
		}
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("bad JSON line %q: %v", sc.Text(), err)
		}
		if ev.Event.Kind == "metric" {
			continue
		}
		keys = append(keys, fmt.Sprintf("%s|%s|%s|%s|%s|%s>%s|%s", ev.Event.Kind, ev.Event.Action, ev.Event.Outcome,
			ev.DCERPC.Interface.Name, ev.Tsch.Task.Path, ev.Source.IP, ev.Destination.IP, ev.Rule.ID))
	}
	slices.Sort(keys)
	return keys
}

// runLiveOn runs the live engine over rings until they are drained.
func runLiveOn(t *testing.T, rings []*fileRing, queue int) (LiveResult, []byte, *Live) {
	t.Helper()
	var buf bytes.Buffer
	out := output.NewOutput(output.NewWriterSink(&buf, false))
	socks := make([][]ringSource, len(rings))
	for i, r := range rings {
		socks[i] = []ringSource{r}
	}
	wait := func([]ringSource, time.Duration) error {
		time.Sleep(time.Millisecond)
		return nil
	}
	l := newLive(LiveConfig{Output: out, Detect: detect.Options{Observer: "test"}, Interfaces: []string{"file0"}, QueueLen: queue}, socks, wait)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan LiveResult)
	go func() { done <- l.Run(ctx) }()
	for _, r := range rings {
		<-r.drained
	}
	if ok, why := l.Healthy(); !ok {
		t.Errorf("Healthy() while capturing = false, %q", why)
	}
	cancel()
	res := <-done
	if err := out.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	for i, r := range rings {
		if !r.closed.Load() {
			t.Errorf("ring %d not closed", i)
		}
	}
	return res, buf.Bytes(), l
}

// TestLiveMatchesReplay: the same traffic, spread over workers by flow,
// gives the events a single-worker replay gives.
func TestLiveMatchesReplay(t *testing.T) {
	files, _ := filepath.Glob("../pcaps/*.pcap")
	if len(files) == 0 {
		t.Skip("no captures in ../pcaps")
	}
	for _, name := range files {
		for _, workers := range []int{1, 3} {
			t.Run(fmt.Sprintf("%s/workers=%d", filepath.Base(name), workers), func(t *testing.T) {
				var want bytes.Buffer
				rout := output.NewOutput(output.NewWriterSink(&want, false))
				rres := Replay(context.Background(), ReplayConfig{Output: rout, Detect: detect.Options{Observer: "test"}}, []string{name})
				rout.Close(context.Background())
				if len(rres.Errors) > 0 {
					t.Fatal(rres.Errors)
				}
				rings := shardFile(t, name, workers)
				res, got, l := runLiveOn(t, rings, 0)
				wk, gk := callKeys(t, want.Bytes()), callKeys(t, got)
				if !slices.Equal(wk, gk) {
					t.Errorf("live events differ from replay\nreplay:\n  %s\nlive:\n  %s", strings.Join(wk, "\n  "), strings.Join(gk, "\n  "))
				}
				if res.Stats.Packets != rres.Stats.Packets || res.Stats.Connections != rres.Stats.Connections || res.Stats.TschCalls != rres.Stats.TschCalls {
					t.Errorf("live stats packets/connections/tsch calls = %d/%d/%d, replay %d/%d/%d",
						res.Stats.Packets, res.Stats.Connections, res.Stats.TschCalls,
						rres.Stats.Packets, rres.Stats.Connections, rres.Stats.TschCalls)
				}
				if res.Err != nil || res.Delivery.DroppedTotal != 0 {
					t.Errorf("Err %v, dropped %+v", res.Err, res.Delivery.Dropped)
				}
				if ok, _ := l.Healthy(); ok {
					t.Error("Healthy() after Run = true")
				}
				// The last line is the closing metric, with every packet.
				lines := bytes.Split(bytes.TrimSpace(got), []byte("\n"))
				var last struct {
					Event  struct{ Kind, Dataset string }
					Metric LiveMetric
				}
				if err := json.Unmarshal(lines[len(lines)-1], &last); err != nil {
					t.Fatal(err)
				}
				var pk uint64
				for _, w := range last.Metric.Workers {
					pk += w.Packets
				}
				if last.Event.Kind != "metric" || last.Event.Dataset != "tschsensor.stats" || pk != rres.Stats.Packets || last.Metric.Kernel.Packets != rres.Stats.Packets {
					t.Errorf("closing metric %s/%s: worker packets %d, kernel %d, want %d", last.Event.Kind, last.Event.Dataset, pk, last.Metric.Kernel.Packets, rres.Stats.Packets)
				}
				// It carries the counters object replay --stats-file writes.
				rc := rres.Stats.Counters(OutputCounters{}, output.Delivery{})
				if last.Metric.Packets.Total != rres.Stats.Packets || last.Metric.DCERPC != rc.DCERPC || last.Metric.Kerberos != rc.Kerberos {
					t.Errorf("closing metric counters: packets %d, dcerpc %+v, kerberos %+v; replay %d, %+v, %+v",
						last.Metric.Packets.Total, last.Metric.DCERPC, last.Metric.Kerberos, rres.Stats.Packets, rc.DCERPC, rc.Kerberos)
				}
			})
		}
	}
}

// TestLiveMetricsRace reads metrics and health while workers run, for the
// race detector.
func TestLiveMetricsRace(t *testing.T) {
	files, _ := filepath.Glob("../pcaps/*.pcap")
	if len(files) == 0 {
		t.Skip("no captures in ../pcaps")
	}
	rings := shardFile(t, files[0], 2)
	var buf bytes.Buffer
	out := output.NewOutput(output.NewWriterSink(&buf, false))
	socks := [][]ringSource{{rings[0]}, {rings[1]}}
	l := newLive(LiveConfig{Output: out, Interfaces: []string{"file0"}, StatsInterval: time.Millisecond}, socks,
		func([]ringSource, time.Duration) error { time.Sleep(time.Millisecond); return nil })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan LiveResult)
	go func() { done <- l.Run(ctx) }()
	var b bytes.Buffer
	for range 50 {
		m := l.Metrics()
		b.Reset()
		w := bufio.NewWriter(&b)
		WritePrometheus(w, m)
		w.Flush()
		l.Healthy()
	}
	<-rings[0].drained
	<-rings[1].drained
	cancel()
	<-done
}

// TestLiveWorkerError: a worker whose socket fails stops, health turns
// bad with the reason, and Run ends with the error once no worker is left.
func TestLiveWorkerError(t *testing.T) {
	var buf bytes.Buffer
	out := output.NewOutput(output.NewWriterSink(&buf, false))
	r := &fileRing{drained: make(chan struct{}), link: layers.LinkTypeEthernet}
	boom := errors.New("eth9: interface removed")
	l := newLive(LiveConfig{Output: out, Interfaces: []string{"eth9"}}, [][]ringSource{{r}},
		func([]ringSource, time.Duration) error { return boom })
	res := l.Run(context.Background())
	if !errors.Is(res.Err, boom) {
		t.Fatalf("Run error = %v, want %v", res.Err, boom)
	}
	m := l.Metrics()
	if m.Healthy || m.Workers[0].Running || !strings.Contains(m.Workers[0].Error, "interface removed") {
		t.Errorf("metrics after failure: %+v", m)
	}
}

// TestChanRecorderDrops: a full queue costs records, counted, not a stall;
// at shutdown the recorder waits instead.
func TestChanRecorderDrops(t *testing.T) {
	ch := make(chan liveRecord, 1)
	var dropped atomic.Uint64
	r := &chanRecorder{ch: ch, timeout: time.Millisecond, dropped: &dropped}
	for range 3 {
		r.Call(&detect.Call{})
	}
	if len(ch) != 1 || dropped.Load() != 2 {
		t.Fatalf("queued %d, dropped %d; want 1, 2", len(ch), dropped.Load())
	}
	r.flushing = true
	got := make(chan int)
	go func() {
		n := 0
		for range ch {
			n++
		}
		got <- n
	}()
	r.File(&detect.FileOp{})
	r.Call(&detect.Call{})
	close(ch)
	if n := <-got; n != 3 || dropped.Load() != 2 {
		t.Fatalf("read %d records, dropped %d; want 3, 2", n, dropped.Load())
	}
}

// TestLiveOrderManyChains: sixty atexec chains between one pair of hosts,
// 50 ms apart so that they overlap, each on its own connection and spread
// over three workers running at their own pace. The detector sees the
// records in capture-time order whatever the workers do, so the alerts,
// including how much of each chain was seen, are the replay's.
func TestLiveOrderManyChains(t *testing.T) {
	name := filepath.Join(t.TempDir(), "copies.pcap")
	if err := testpcap.Copies("../pcaps/impacket-atexec-smb2-clear.pcap", name, 60, 50*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	alerts := func(out []byte) []string {
		var keys []string
		for _, l := range bytes.Split(bytes.TrimSpace(out), []byte("\n")) {
			var ev struct {
				Event  struct{ Kind, Reason string }
				Source struct{ Port int }
				Rule   struct{ ID string }
			}
			if err := json.Unmarshal(l, &ev); err != nil {
				t.Fatal(err)
			}
			if ev.Event.Kind == "alert" {
				keys = append(keys, fmt.Sprintf("%s %d %s", ev.Rule.ID, ev.Source.Port, ev.Event.Reason))
			}
		}
		slices.Sort(keys)
		return keys
	}
	var want bytes.Buffer
	rout := output.NewOutput(output.NewWriterSink(&want, false))
	Replay(context.Background(), ReplayConfig{Output: rout, Detect: detect.Options{Observer: "test"}}, []string{name})
	rout.Close(context.Background())
	wk := alerts(want.Bytes())
	n := 0
	for _, k := range wk {
		if strings.HasPrefix(k, "atexec ") {
			n++
		}
	}
	if n != 60 {
		t.Fatalf("replay raised %d atexec alerts for 60 chains", n)
	}
	_, got, _ := runLiveOn(t, shardFile(t, name, 3), 0)
	if gk := alerts(got); !slices.Equal(wk, gk) {
		t.Errorf("live alerts differ from replay\nreplay:\n  %s\nlive:\n  %s", strings.Join(wk, "\n  "), strings.Join(gk, "\n  "))
	}
}

// TestLivePartialChainOnQuietLink: a chain that never completes (sealed,
// no output read back) raises its alert when its window has passed on the
// live clock, while the sensor runs and no packet arrives, not at
// shutdown (issue 16).
func TestLivePartialChainOnQuietLink(t *testing.T) {
	rings := shardFile(t, "../pcaps/gomsrpc-schtask-np-sealed.pcap", 2)
	var start time.Time
	for _, r := range rings {
		if len(r.pkts) > 0 && (start.IsZero() || r.pkts[0].ci.Timestamp.Before(start)) {
			start = r.pkts[0].ci.Timestamp
		}
	}
	var clock atomic.Int64 // the wall clock the test moves
	clock.Store(start.UnixNano())
	var out syncbuf.Buffer // the detector goroutine writes it
	socks := make([][]ringSource, len(rings))
	for i, r := range rings {
		socks[i] = []ringSource{r}
	}
	l := newLive(LiveConfig{Output: output.NewOutput(output.NewWriterSink(&out, true)), Interfaces: []string{"file0"},
		Detect: detect.Options{Observer: "test", AtExecWindow: 10 * time.Second}}, socks,
		func([]ringSource, time.Duration) error { time.Sleep(time.Millisecond); return nil })
	l.now = func() time.Time { return time.Unix(0, clock.Load()) }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan LiveResult)
	go func() { done <- l.Run(ctx) }()
	defer func() { cancel(); <-done }()
	for _, r := range rings {
		<-r.drained
	}
	// The link stays quiet; the clock passes the 10 s window.
	clock.Store(start.Add(time.Minute).UnixNano())
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(out.String(), `"id":"atexec"`) {
		if time.Now().After(deadline) {
			t.Fatalf("no atexec alert while running, the window past on the live clock:\n%s", out.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}
