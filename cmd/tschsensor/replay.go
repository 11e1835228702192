package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

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
	if err := fs.Parse(args); err != nil {
		return 2
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

	var sinks []sensor.Sink
	if !*noStdout {
		sinks = append(sinks, sensor.NewWriterSink(stdout, false))
	}
	natsSink, err := openNATS(ctx, nf, cf.observer, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "tschsensor:", err)
		return 2
	}
	if natsSink != nil {
		sinks = append(sinks, natsSink)
	}
	out := sensor.NewOutput(sinks...)
	res := sensor.Replay(ctx, sensor.ReplayConfig{Options: opts, Detect: dopts, Output: out}, fs.Args())
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
