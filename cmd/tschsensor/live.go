package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/tschsensor/tschsensor/sensor"
	"github.com/tschsensor/tschsensor/sensor/source"
)

// ifaceList is the repeatable -i flag.
type ifaceList []string

func (l *ifaceList) String() string { return strings.Join(*l, ",") }
func (l *ifaceList) Set(s string) error {
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			*l = append(*l, v)
		}
	}
	return nil
}

// runLive implements `tschsensor run`: capture on interfaces until SIGINT
// or SIGTERM, then flush open calls and wait for NATS acknowledgements.
func runLive(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cf := addCommonFlags(fs)
	nf := addNATSFlags(fs)
	var ifaces ifaceList
	fs.Var(&ifaces, "i", "capture `interface` (repeat or comma-separate for several)")
	workers := fs.Int("workers", runtime.NumCPU(), "capture workers; the kernel spreads connections over them (PACKET_FANOUT_HASH)")
	bpfExpr := fs.String("bpf", "", "capture filter in tcpdump syntax, compiled with `tcpdump -ddd` (default: built-in TCP filter)")
	bpfFile := fs.String("bpf-file", "", "capture filter compiled beforehand by `tcpdump -ddd` into FILE (for images without tcpdump)")
	snapLen := fs.Int("snaplen", source.DefaultSnapLen, "bytes kept of each packet")
	promisc := fs.Bool("promisc", true, "put the interfaces in promiscuous mode while capturing (a packet membership the kernel undoes at exit)")
	blockSize := fs.Int("block-size", source.DefaultBlockSize, "ring block size in bytes (multiple of the page size)")
	blockCount := fs.Int("block-count", source.DefaultNumBlocks, "ring blocks per socket (ring = block-size × block-count per worker per interface)")
	frameSize := fs.Int("frame-size", source.DefaultFrameSize, "ring frame size (TPACKET_V3 packs frames; sets tp_frame_nr)")
	blockTimeout := fs.Duration("block-timeout", source.DefaultBlockTimeout, "hand a partly filled ring block to the worker after this long")
	fanout := fs.Int("fanout-group", os.Getpid()&0xffff, "PACKET_FANOUT group id of the first interface (interface n uses id+n)")
	statsInterval := fs.Duration("stats-interval", sensor.DefaultStatsInterval, "interval of the tschsensor.stats metric line")
	metricsAddr := fs.String("metrics-addr", "", "serve Prometheus /metrics and /healthz on `HOST:PORT`")
	queue := fs.Int("queue", sensor.DefaultQueueLen, "records waiting for the detector before workers drop them")
	noStdout := fs.Bool("no-stdout", false, "do not print events on stdout (NATS only)")
	statsFile := fs.String("stats-file", "", statsFileUsage+", at shutdown")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: tschsensor run -i IFACE [-i IFACE...] [flags]")
		fs.PrintDefaults()
	}
	if rc, ok := parseFlags(fs, args, false, stderr); !ok {
		return rc
	}
	if len(ifaces) == 0 {
		fmt.Fprintln(stderr, "tschsensor run: no interface: give -i IFACE")
		return 2
	}
	opts, dopts, err := cf.options()
	if err != nil {
		fmt.Fprintln(stderr, "tschsensor:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	// SIGHUP reloads the rules file; without one it is only logged, never
	// the default action (exit), so `systemctl reload` cannot stop capture.
	stopHUP := make(chan struct{})
	defer close(stopHUP)
	watchSIGHUP(cf.rules, dopts.Rules, log, stopHUP)

	capture := source.AFPacketConfig{
		BlockSize: *blockSize, NumBlocks: *blockCount, FrameSize: *frameSize, BlockTimeout: *blockTimeout,
		SnapLen: *snapLen, Promisc: *promisc,
	}
	out, err := openOutput(ctx, nf, cf.observer, stdout, stderr, *noStdout, true)
	if err != nil {
		fmt.Fprintln(stderr, "tschsensor:", err)
		return 2
	}
	closeOut := func() {
		closeCtx, cancel := context.WithTimeout(context.Background(), nf.AckTimeout)
		defer cancel()
		if err := out.Close(closeCtx); err != nil {
			fmt.Fprintln(stderr, "tschsensor: closing outputs:", err)
		}
	}

	live, err := sensor.NewLive(sensor.LiveConfig{
		Options: opts, Detect: dopts, Output: out,
		Interfaces: ifaces, Workers: *workers, Capture: capture, FanoutGroup: *fanout,
		FilterExpr: *bpfExpr, FilterFile: *bpfFile,
		StatsInterval: *statsInterval, QueueLen: *queue, Log: log,
	})
	if err != nil {
		closeOut()
		fmt.Fprintln(stderr, "tschsensor:", err)
		var ce *sensor.ConfigError
		if errors.As(err, &ce) {
			return 2
		}
		return 1
	}
	var srv *http.Server
	if *metricsAddr != "" {
		ln, err := net.Listen("tcp", *metricsAddr)
		if err != nil {
			closeOut()
			fmt.Fprintf(stderr, "tschsensor: --metrics-addr: %v\n", err)
			return 2
		}
		srv = &http.Server{Handler: sensor.NewMetricsHandler(live), ReadHeaderTimeout: 5 * time.Second}
		go srv.Serve(ln)
		log.Info("metrics", "addr", ln.Addr().String())
	}
	if !cf.quiet {
		log.Info("capturing", "interfaces", strings.Join(ifaces, ","), "workers", *workers, "filter", filterName(*bpfExpr, *bpfFile))
	}
	res := live.Run(ctx)
	if srv != nil {
		shCtx, cancel := context.WithTimeout(context.Background(), time.Second)
		srv.Shutdown(shCtx)
		cancel()
	}
	closeOut()
	if !cf.quiet {
		// Sinks may refuse more records while closing (acknowledgements
		// that never came).
		res.Stats.WriteSummary(stderr, res.Elapsed, out.Events, out.Alerts, out.Delivery())
		if rs := dopts.Rules.Load(); rs != nil {
			writeSuppressions(stderr, rs)
		}
		drop := 0.0
		if res.Kernel.Packets > 0 {
			drop = 100 * float64(res.Kernel.Drops) / float64(res.Kernel.Packets)
		}
		fmt.Fprintf(stderr, "  kernel: %d packets, %d dropped (%.3f%%), %d ring freezes\n", res.Kernel.Packets, res.Kernel.Drops, drop, res.Kernel.Freezes)
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
	if res.Err != nil {
		fmt.Fprintln(stderr, "tschsensor:", res.Err)
		return 1
	}
	return rc
}

func filterName(expr, file string) string {
	switch {
	case file != "":
		return "file " + file
	case expr == "":
		return "built-in tcp"
	}
	return expr
}
