package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/tschsensor/tschsensor/sensor"
	"github.com/tschsensor/tschsensor/sensor/source"
)

// exitDropped is replay's exit status when any record was lost (spool
// full, sink write error): distinct from 1 (a capture could not be read)
// and 2 (usage or set-up), and it wins over 1. docs/nats.md documents it.
const exitDropped = 3

func runReplay(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("replay", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cf := addCommonFlags(fs)
	nf := addNATSFlags(fs)
	noStdout := fs.Bool("no-stdout", false, "do not print events on stdout (NATS only)")
	statsFile := fs.String("stats-file", "", statsFileUsage)
	workers := fs.Int("workers", 1, "decoding workers; connections are hashed to them and the output is the same for any number")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: tschsensor replay [flags] FILE...")
		fs.PrintDefaults()
		fmt.Fprintln(stderr, "\nexit status: 0 done, 1 a capture could not be read, 2 usage or set-up error, 3 records dropped (spool full, write error)")
	}
	if rc, ok := parseFlags(fs, args, true, stderr); !ok {
		return rc
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return 2
	}
	opts, dopts, err := cf.options()
	if err != nil {
		fmt.Fprintln(stderr, "tschsensor:", err)
		return 2
	}
	cfg := sensor.ReplayConfig{Options: opts, Detect: dopts, Workers: *workers}
	if !cf.quiet && isTerminal(stderr) {
		cfg.Progress = progressBar(stderr)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	out, err := openOutput(ctx, nf, cf.observer, stdout, stderr, *noStdout, false)
	if err != nil {
		fmt.Fprintln(stderr, "tschsensor:", err)
		return 2
	}
	cfg.Output = out
	closeOut := func() {
		closeCtx, cancel := context.WithTimeout(context.Background(), nf.AckTimeout)
		defer cancel()
		if err := out.Close(closeCtx); err != nil {
			fmt.Fprintln(stderr, "tschsensor: closing outputs:", err)
		}
	}
	rp, err := sensor.NewReplay(cfg)
	if err != nil {
		closeOut()
		fmt.Fprintln(stderr, "tschsensor:", err)
		return 2
	}
	res := rp.Run(ctx, fs.Args())
	closeOut()
	// Read after the sinks closed: NATS may still lose records on close.
	del := out.Delivery()
	if !cf.quiet {
		res.Stats.WriteSummary(stderr, res.Elapsed, out.Events, out.Alerts, del)
		if rs := dopts.Rules.Load(); rs != nil {
			writeSuppressions(stderr, rs)
		}
	}
	for _, err := range out.Errors() {
		fmt.Fprintln(stderr, "tschsensor: output:", err)
	}
	rc := 0
	if *statsFile != "" {
		if err := writeStatsFile(*statsFile, &res.Stats, out, dopts); err != nil {
			fmt.Fprintln(stderr, "tschsensor:", err)
			rc = 1
		}
	}
	for _, err := range res.Errors {
		if errors.Is(err, source.ErrCutShort) {
			fmt.Fprintln(stderr, "tschsensor: warning:", err)
			continue
		}
		fmt.Fprintln(stderr, "tschsensor:", err)
		rc = 1
	}
	if del.DroppedTotal > 0 {
		// Loss is never silent, not even with --quiet.
		fmt.Fprintf(stderr, "tschsensor: %d records dropped (queue %d, encode %d, sink %d, spool %d, shutdown %d)\n", del.DroppedTotal,
			del.Dropped.Queue, del.Dropped.Encode, del.Dropped.Sink, del.Dropped.Spool, del.Dropped.Shutdown)
		rc = exitDropped
	}
	return rc
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// progressBar draws one updating line per file on a terminal.
func progressBar(w io.Writer) func(file string, done, total int64) {
	start := time.Now()
	return func(file string, done, total int64) {
		pct := 100.0
		if total > 0 {
			pct = 100 * float64(done) / float64(total)
		}
		const width = 30
		n := int(pct / 100 * width)
		mbs := float64(done) / 1e6 / max(time.Since(start).Seconds(), 1e-3)
		fmt.Fprintf(w, "\r%-40.40s [%-30s] %5.1f%% %7.1f MB/s", filepath.Base(file), strings.Repeat("=", min(n, width)), pct, mbs)
		if done >= total {
			fmt.Fprintln(w)
		}
	}
}
