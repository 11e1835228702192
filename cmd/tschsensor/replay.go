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
)

func runReplay(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("replay", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cf := addCommonFlags(fs)
	nf := addNATSFlags(fs)
	noStdout := fs.Bool("no-stdout", false, "do not print events on stdout (NATS only)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: tschsensor replay [flags] FILE...")
		fs.PrintDefaults()
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
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	out, err := openOutput(ctx, nf, cf.observer, stdout, stderr, *noStdout, false)
	if err != nil {
		fmt.Fprintln(stderr, "tschsensor:", err)
		return 2
	}
	cfg := sensor.ReplayConfig{Options: opts, Detect: dopts, Output: out}
	if !cf.quiet && isTerminal(stderr) {
		cfg.Progress = progressBar(stderr)
	}
	res := sensor.Replay(ctx, cfg, fs.Args())
	closeCtx, cancel := context.WithTimeout(context.Background(), nf.AckTimeout)
	defer cancel()
	if err := out.Close(closeCtx); err != nil {
		fmt.Fprintln(stderr, "tschsensor: closing outputs:", err)
	}
	if !cf.quiet {
		res.Stats.DroppedEvents = out.Dropped
		res.Stats.WriteSummary(stderr, res.Elapsed, out.Events, out.Alerts)
	}
	for _, err := range out.Errors() {
		fmt.Fprintln(stderr, "tschsensor: output:", err)
	}
	rc := 0
	for _, err := range res.Errors {
		if errors.Is(err, sensor.ErrCutShort) {
			fmt.Fprintln(stderr, "tschsensor: warning:", err)
			continue
		}
		fmt.Fprintln(stderr, "tschsensor:", err)
		rc = 1
	}
	if out.Dropped > 0 {
		rc = 1
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
