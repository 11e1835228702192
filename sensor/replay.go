package sensor

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/tschsensor/tschsensor/detect"
	"github.com/tschsensor/tschsensor/sensor/output"
	"github.com/tschsensor/tschsensor/sensor/source"
)

// ReplayConfig configures a replay of capture files.
type ReplayConfig struct {
	Options  Options
	Detect   detect.Options
	Output   *output.Output
	Progress func(file string, done, total int64)
	// Workers is the number of decoding workers; flows are hashed to them
	// and the output is the same for any number (default 1).
	Workers int
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

// Replayer replays capture files: New validates, Run replays.
type Replayer struct {
	cfg ReplayConfig
}

// NewReplay checks the configuration.
func NewReplay(cfg ReplayConfig) (*Replayer, error) {
	switch {
	case cfg.Output == nil:
		return nil, &ConfigError{errors.New("replay: no output")}
	case cfg.Workers < 0 || cfg.Workers > maxWorkers:
		return nil, &ConfigError{fmt.Errorf("replay: %d workers: want 1 to %d", cfg.Workers, maxWorkers)}
	}
	if err := cfg.Options.validate(); err != nil {
		return nil, &ConfigError{fmt.Errorf("replay: %w", err)}
	}
	return &Replayer{cfg: cfg}, nil
}

// Replay checks cfg and replays files; a configuration error is the
// result's only error.
func Replay(ctx context.Context, cfg ReplayConfig, files []string) ReplayResult {
	r, err := NewReplay(cfg)
	if err != nil {
		return ReplayResult{Errors: []error{err}}
	}
	return r.Run(ctx, files)
}

// Run reads the files in order. With one worker or several, the output is
// the same on every run and on every machine.
func (r *Replayer) Run(ctx context.Context, files []string) ReplayResult {
	cfg := r.cfg
	start := time.Now()
	// Events are encoded and written on a goroutine of their own (emitQueue).
	q := newEmitQueue(cfg.Output, cfg.Options.PanicHook)
	be := newBackendEmit(cfg.Options, cfg.Detect, cfg.Output, q.Emit)
	// One memory budget: the resolver's share, the rest split over the
	// workers.
	opt := cfg.Options
	be.budget = splitBudget(opt.MemoryBudget, max(cfg.Workers, 1))
	opt.MemoryBudget = be.budget.perWorker
	be.res.MaxHeldBytes = int(be.budget.held)
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
	var workers []*Stats
	if cfg.Workers > 1 {
		d := newShardDispatcher(opt, cfg.Workers)
		m := newShardMerger(be, be.ord.Release, cfg.Workers)
		m.hook = opt.PanicHook
		d.start()
		done := make(chan struct{})
		go func() {
			defer close(done)
			m.run(d.workers)
		}()
		read(d)
		d.finish()
		<-done
		be.panics += m.panics
		for _, sw := range d.workers {
			workers = append(workers, sw.w.Stats())
		}
	} else {
		// The worker on this goroutine, the back half on another (see
		// pipedWorker).
		w := newPipedWorker(opt)
		m := newShardMerger(be, be.ord.Release, 1)
		m.hook = opt.PanicHook
		done := make(chan struct{})
		go func() {
			defer close(done)
			m.run([]*shardWorker{w.sw})
		}()
		read(w)
		w.finish()
		<-done
		be.panics += m.panics
		workers = append(workers, w.Stats())
	}
	be.flush()
	q.close()
	be.panics += q.panics.Load()
	res.Stats = be.stats(workers)
	res.Detect = be.det.Stats()
	res.Elapsed = time.Since(start)
	return res
}

// replayBatch is how many packets replay reads at a time.
const replayBatch = 64

func replayFile(ctx context.Context, w packetSink, name string, progress func(string, int64, int64)) error {
	src, err := source.OpenFile(name)
	if err != nil {
		return err
	}
	defer src.Close()
	w.SetFile(filepath.Base(name))
	size := src.Size()
	fs := fileSource{src}
	buf := make([]source.Packet, replayBatch)
	for {
		// Between chunks of 65536 packets: cancellation and progress.
		if ctx.Err() != nil {
			return fmt.Errorf("%s: %w", name, ctx.Err())
		}
		if progress != nil {
			progress(name, src.Consumed(), size)
		}
		_, end, err := pump(fs, w, buf, 1<<16)
		if err != nil {
			return err
		}
		if end {
			if progress != nil {
				progress(name, size, size)
			}
			return nil
		}
	}
}
