package sensor

import (
	"bytes"
	"context"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/tschsensor/tschsensor/detect"
)

// replayWorkers replays files with n workers and returns stdout's bytes.
func replayWorkers(t *testing.T, n int, files ...string) ([]byte, ReplayResult) {
	t.Helper()
	var buf bytes.Buffer
	out := NewOutput(NewWriterSink(&buf, false))
	res := Replay(context.Background(), ReplayConfig{Detect: detect.Options{Observer: "shard"}, Output: out, Workers: n,
		Options: Options{PanicHook: func(p any) { t.Errorf("panic: %v", p) }}}, files)
	if err := out.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), res
}

// TestReplayWorkersSameOutput replays every capture with 1, 2 and 4
// workers: events (ids, order, frames) and counters must not change.
func TestReplayWorkersSameOutput(t *testing.T) {
	files, _ := filepath.Glob("../pcaps/*.pcap")
	shared, _ := filepath.Glob("../../shared/pcaps/*.pcap*")
	if len(shared) == 0 {
		t.Log("../shared/pcaps absent: project captures only")
	}
	files = append(files, shared...)
	if len(files) == 0 {
		t.Fatal("no captures")
	}
	events := 0
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			want, res1 := replayWorkers(t, 1, f)
			events += bytes.Count(want, []byte("\n"))
			for _, n := range []int{2, 4} {
				got, res := replayWorkers(t, n, f)
				if !bytes.Equal(got, want) {
					t.Errorf("%d workers: output differs from one worker's:\n%s\nwant:\n%s", n, got, want)
				}
				if len(res.Errors) != len(res1.Errors) {
					t.Errorf("%d workers: errors %v, one worker %v", n, res.Errors, res1.Errors)
				}
				s, s1 := res.Stats, res1.Stats
				if s.Packets != s1.Packets || s.Bytes != s1.Bytes || s.TCPPackets != s1.TCPPackets || s.Connections != s1.Connections ||
					s.TschCalls != s1.TschCalls || s.FileOps != s1.FileOps || !s.FirstTime.Equal(s1.FirstTime) || !s.LastTime.Equal(s1.LastTime) {
					t.Errorf("%d workers: counters %+v, one worker %+v", n, s, s1)
				}
				if !reflect.DeepEqual(s.Anomalies, s1.Anomalies) {
					t.Errorf("%d workers: anomalies %v, one worker %v", n, s.Anomalies, s1.Anomalies)
				}
			}
		})
	}
	if events == 0 {
		t.Error("no capture produced an event: the comparison proves nothing")
	}
}

// TestReplayWorkersSeveralFiles replays all project captures in one run:
// frame numbers restart per file and records name their file.
func TestReplayWorkersSeveralFiles(t *testing.T) {
	files, _ := filepath.Glob("../pcaps/*.pcap")
	want, _ := replayWorkers(t, 1, files...)
	got, _ := replayWorkers(t, 3, files...)
	if !bytes.Equal(got, want) {
		t.Errorf("3 workers differ from one on %d files", len(files))
	}
}

// TestShardSpreadsFlows checks that the dispatcher uses every worker and
// keeps both directions of a connection together.
func TestShardSpreadsFlows(t *testing.T) {
	files, _ := filepath.Glob("../../shared/pcaps/*.pcap")
	if len(files) == 0 {
		t.Skip("../shared/pcaps absent")
	}
	_, res := replayWorkers(t, 1, files...)
	d := newShardDispatcher(Options{}, 2)
	m := newShardMerger(NewResolver(directRecorder{detect.New(detect.Options{}, func(*detect.Event) {})}), func(time.Time) {}, 2)
	d.start()
	done := make(chan struct{})
	go func() { defer close(done); m.run(d.workers) }()
	for _, f := range files {
		if err := replayFile(context.Background(), d, f, nil); err != nil {
			t.Fatal(err)
		}
	}
	d.finish()
	<-done
	var conns uint64
	for i, sw := range d.workers {
		s := sw.w.Stats()
		if s.TCPPackets == 0 {
			t.Errorf("worker %d got no TCP packet", i)
		}
		conns += s.Connections
	}
	// A connection split across workers would be counted on both.
	if conns != res.Stats.Connections {
		t.Errorf("workers saw %d connections, one worker %d", conns, res.Stats.Connections)
	}
}
