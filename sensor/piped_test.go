package sensor

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"

	"github.com/tschsensor/tschsensor/detect"
	"github.com/tschsensor/tschsensor/internal/flood"
	"github.com/tschsensor/tschsensor/sensor/output"
)

// orderedWorker is one worker in front of the orderer, as replay ran
// before pipedWorker (the reference the tests compare with): after each packet,
// what the capture clock allows goes on to the detector.
type orderedWorker struct {
	*Worker
	ord *orderer
}

func (o *orderedWorker) Packet(data []byte, ci gopacket.CaptureInfo, link layers.LinkType) {
	o.Worker.Packet(data, ci, link)
	o.ord.Release(o.Worker.now)
}

// replayDirect replays files as one worker did before its back half had a
// goroutine of its own: the worker hands each record straight to the
// resolver and releases the orderer after every packet.
func replayDirect(t *testing.T, files ...string) ([]byte, Stats) {
	t.Helper()
	var buf bytes.Buffer
	out := output.NewOutput(output.NewWriterSink(&buf, false))
	opt := Options{PanicHook: func(p any) { t.Errorf("panic: %v", p) }}
	be := newBackend(opt, detect.Options{Observer: "shard"}, out)
	be.budget = splitBudget(opt.MemoryBudget, 1)
	opt.MemoryBudget = be.budget.perWorker
	be.res.MaxHeldBytes = int(be.budget.held)
	w := NewWorker(opt, be, nil)
	for _, f := range files {
		if err := replayFile(context.Background(), &orderedWorker{w, be.ord}, f, nil); err != nil {
			t.Log(err) // a cut capture: Replay reports it alike
		}
	}
	w.Flush()
	be.flush()
	s := be.stats([]*Stats{w.Stats()})
	if err := out.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), s
}

// writeFlood writes a flood of kind, the project's atexec spliced into it,
// to a capture file.
func writeFlood(t *testing.T, kind string, n int) string {
	t.Helper()
	splice := plLoad(t, "../pcaps/impacket-atexec-smb2-clear.pcap")
	pkts := make([]flood.Packet, len(splice))
	for i, p := range splice {
		pkts[i] = flood.Packet{CI: p.ci, Data: p.data}
	}
	name := filepath.Join(t.TempDir(), kind+".pcap")
	f, err := os.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	pw := pcapgo.NewWriter(f)
	if err := pw.WriteFileHeader(65535, layers.LinkTypeEthernet); err != nil {
		t.Fatal(err)
	}
	err = flood.Generate(kind, n, pkts, func(ci gopacket.CaptureInfo, data []byte) error {
		return pw.WritePacket(ci, data)
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return name
}

// TestReplayOneWorkerPiped: replay's single worker, whose records reach the
// back half through batches on another goroutine, gives the events and the
// counters of the worker handing them on directly, on every capture and on
// floods that fill the batches and the orderer.
func TestReplayOneWorkerPiped(t *testing.T) {
	files, _ := filepath.Glob("../pcaps/*.pcap")
	shared, _ := filepath.Glob("../../shared/pcaps/*.pcap*")
	if len(shared) == 0 {
		t.Log("../shared/pcaps absent: project captures and floods only")
	}
	files = append(files, shared...)
	// Unanswered requests that would change the server: one event per
	// packet, more than the batches and the orderer hold; unanswered
	// read-only requests: flood summaries; unanswered CREATEs: records from
	// idle flushes.
	files = append(files, writeFlood(t, flood.RPCRuns, 3*shardBatches*shardMaxPackets),
		writeFlood(t, flood.RPCRequests, 3*shardBatches*shardMaxPackets), writeFlood(t, flood.Creates, 20000))
	events := 0
	check := func(t *testing.T, files ...string) {
		want, ws := replayDirect(t, files...)
		events += bytes.Count(want, []byte("\n"))
		got, res := replayWorkers(t, 1, files...)
		if !bytes.Equal(got, want) {
			t.Errorf("output differs from the direct worker's:\n%s\nwant:\n%s", got, want)
		}
		if !reflect.DeepEqual(res.Stats, ws) {
			t.Errorf("counters %+v, direct worker %+v", res.Stats, ws)
		}
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) { check(t, f) })
	}
	t.Run("all", func(t *testing.T) { check(t, files...) })
	if events < 3*shardBatches*shardMaxPackets {
		t.Errorf("%d events: the floods did not fill the batches", events)
	}
}
