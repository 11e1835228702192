package sensor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/tschsensor/tschsensor/detect"
)

// ReplayConfig configures a replay of capture files.
type ReplayConfig struct {
	Options  Options
	Detect   detect.Options
	Output   *Output
	Progress func(file string, done, total int64)
	// Workers is the number of decoding workers; flows are hashed to them
	// and the output is the same for any number (default 1).
	Workers int
}

// packetSink is what a replay hands packets to: one worker, or the
// dispatcher in front of several.
type packetSink interface {
	SetFile(name string)
	Packet(data []byte, ci gopacket.CaptureInfo, link layers.LinkType)
}

// directRecorder hands records straight to the detector (one worker).
type directRecorder struct{ d *detect.Detector }

func (r directRecorder) Call(c *detect.Call)   { r.d.Call(c) }
func (r directRecorder) File(f *detect.FileOp) { r.d.File(f) }

// ReplayResult summarises a replay.
type ReplayResult struct {
	Stats   Stats
	Detect  detect.Stats
	Elapsed time.Duration
	// Errors are per-file read errors; events before them were written.
	Errors []error
}

// Replay reads the files in order through one worker: the output is the same
// on every run and on every machine.
func Replay(ctx context.Context, cfg ReplayConfig, files []string) ReplayResult {
	start := time.Now()
	det := detect.New(cfg.Detect, cfg.Output.Emit)
	// The same stages as live capture: resolver, capture-time order, detector.
	ord := newOrderer(directRecorder{det})
	res0 := NewResolver(ord)
	res0.Tsch = cfg.Options.Tsch
	var res ReplayResult
	read := func(sink packetSink) {
		for _, name := range files {
			if err := replayFile(ctx, sink, name, cfg.Progress); err != nil {
				res.Errors = append(res.Errors, err)
				if errors.Is(err, context.Canceled) {
					break
				}
			}
		}
	}
	if cfg.Workers > 1 {
		d := newShardDispatcher(cfg.Options, cfg.Workers)
		m := newShardMerger(res0, ord.Release, cfg.Workers)
		d.start()
		done := make(chan struct{})
		go func() {
			defer close(done)
			m.run(d.workers)
		}()
		read(d)
		d.finish()
		<-done
		res.Stats = newStats()
		for _, sw := range d.workers {
			res.Stats.Merge(sw.w.Stats())
		}
	} else {
		w := NewWorker(cfg.Options, res0, nil)
		read(orderedWorker{w, ord})
		w.Flush()
		res.Stats = *w.Stats()
	}
	res0.Flush()
	ord.Flush()
	det.Flush()
	res0.account(&res.Stats)
	res.Stats.RecordsLate = ord.Late
	res.Detect = det.Stats()
	res.Elapsed = time.Since(start)
	return res
}

// orderedWorker is one worker in front of the orderer: after each packet,
// what the capture clock allows goes on to the detector.
type orderedWorker struct {
	*Worker
	ord *orderer
}

func (o orderedWorker) Packet(data []byte, ci gopacket.CaptureInfo, link layers.LinkType) {
	o.Worker.Packet(data, ci, link)
	o.ord.Release(o.Worker.now)
}

func replayFile(ctx context.Context, w packetSink, name string, progress func(string, int64, int64)) error {
	src, err := OpenFile(name)
	if err != nil {
		return err
	}
	defer src.Close()
	w.SetFile(filepath.Base(name))
	var size int64
	if fi, err := src.f.Stat(); err == nil {
		size = fi.Size()
	}
	for i := 0; ; i++ {
		if i&0xffff == 0 {
			if ctx.Err() != nil {
				return fmt.Errorf("%s: %w", name, ctx.Err())
			}
			if progress != nil {
				progress(name, src.Consumed(), size)
			}
		}
		data, ci, link, err := src.ReadPacket()
		if err == io.EOF {
			if progress != nil {
				progress(name, size, size)
			}
			return nil
		}
		if err != nil {
			return err
		}
		w.Packet(data, ci, link)
	}
}
