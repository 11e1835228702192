package sensor

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/tschsensor/tschsensor/detect"
	"github.com/tschsensor/tschsensor/sensor/output"
)

// panicSink panics on its record number at (counting from 0) and takes
// every other record.
type panicSink struct {
	at, n int
}

func (s *panicSink) Publish(output.Record) error {
	s.n++
	if s.n-1 == s.at {
		panic("sink fault")
	}
	return nil
}

func (s *panicSink) Close(context.Context) error { return nil }

// TestEmitQueuePanic: a panic while one event is written, on replay's
// output stage, is counted as bug_panic_recovered; the other events still
// reach every sink, in order, and the run ends.
func TestEmitQueuePanic(t *testing.T) {
	const file = "../pcaps/impacket-atexec-smb2-clear.pcap"
	want, _ := replayDirect(t, file)
	var buf bytes.Buffer
	ps := &panicSink{at: 1}
	out := output.NewOutput(output.NewWriterSink(&buf, false), ps)
	var hooked []any
	opt := Options{PanicHook: func(p any) { hooked = append(hooked, p) }}
	res := Replay(context.Background(), ReplayConfig{Options: opt, Detect: detect.Options{Observer: "shard"}, Output: out}, []string{file})
	if err := out.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(res.Errors) > 0 {
		t.Fatal(res.Errors)
	}
	if !bytes.Equal(buf.Bytes(), want) {
		t.Errorf("output:\n%s\nwant:\n%s", buf.Bytes(), want)
	}
	if lines := bytes.Count(want, []byte("\n")); ps.n != lines || lines < 2 {
		t.Errorf("panicking sink saw %d records, want %d (at least 2)", ps.n, lines)
	}
	if got := res.Stats.Anomalies[AnomalyPanic]; got != 1 || len(hooked) != 1 || hooked[0] != "sink fault" {
		t.Errorf("%s = %d, hook saw %v; want 1 and [sink fault]", AnomalyPanic, got, hooked)
	}
}

// TestShardMergerPanic: a panic on the back half while the merger hands a
// batch on is counted, the batch still goes back to its worker, and the
// next batches are handled.
func TestShardMergerPanic(t *testing.T) {
	calls := 0
	m := newShardMerger(nil, func(time.Time) {
		calls++
		if calls == 1 {
			panic("back half fault")
		}
	}, 1)
	var hooked []any
	m.hook = func(p any) { hooked = append(hooked, p) }
	sw := &shardWorker{out: make(chan *shardBatch, 3), free: make(chan *shardBatch, 3)}
	for pos := range uint64(3) {
		sw.out <- &shardBatch{out: []shardOut{{pos: pos + 1, kind: outSeq, seq: pos + 1}}}
	}
	close(sw.out)
	m.run([]*shardWorker{sw})
	if m.panics != 1 || len(hooked) != 1 || hooked[0] != "back half fault" {
		t.Errorf("panics %d, hook saw %v; want 1 and [back half fault]", m.panics, hooked)
	}
	if calls != 3 || len(sw.free) != 3 {
		t.Errorf("%d batches released, %d handed back; want 3 and 3", calls, len(sw.free))
	}
	if m.seq != 2 {
		t.Errorf("%d records numbered after the fault, want 2", m.seq)
	}
}
