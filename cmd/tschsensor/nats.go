package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/tschsensor/tschsensor/sensor/natsout"
)

// natsEnvPrefix names the environment variables that stand in for unset
// NATS flags: --nats-max-age is TSCHSENSOR_NATS_MAX_AGE, --nats is
// TSCHSENSOR_NATS_URL, --spool-dir is TSCHSENSOR_SPOOL_DIR.
const natsEnvPrefix = "TSCHSENSOR_"

// envName maps a flag name to its environment variable.
func envName(flagName string) string {
	if flagName == "nats" {
		return natsEnvPrefix + "NATS_URL"
	}
	return natsEnvPrefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// natsFlags registers flags whose values, when a flag is not given,
// come from its environment variable. The variable is applied at
// registration, so a flag on the command line always wins.
type natsFlags struct {
	fs *flag.FlagSet
	o  *natsout.NATSOptions
}

func (nf natsFlags) add(v flag.Value, name, usage string) {
	env := envName(name)
	if ev, ok := os.LookupEnv(env); ok {
		if err := v.Set(ev); err != nil && nf.o.SetupErr == nil {
			nf.o.SetupErr = fmt.Errorf("%s=%q: %w", env, ev, err)
		}
	}
	nf.fs.Var(v, name, usage+" (env "+env+")")
}

type stringValue struct{ p *string }

func (v stringValue) String() string {
	if v.p == nil {
		return ""
	}
	return *v.p
}
func (v stringValue) Set(s string) error { *v.p = s; return nil }

// secretValue never shows its value, so --help does not print a password
// taken from the environment.
type secretValue struct{ p *string }

func (v secretValue) String() string     { return "" }
func (v secretValue) Set(s string) error { *v.p = s; return nil }

type durationValue struct{ p *time.Duration }

func (v durationValue) String() string {
	if v.p == nil {
		return ""
	}
	return v.p.String()
}
func (v durationValue) Set(s string) error {
	d, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	if d < 0 {
		return errors.New("negative duration")
	}
	*v.p = d
	return nil
}

type intValue struct{ p *int }

func (v intValue) String() string {
	if v.p == nil {
		return ""
	}
	return strconv.Itoa(*v.p)
}
func (v intValue) Set(s string) error {
	n, err := strconv.Atoi(s)
	if err != nil {
		return err
	}
	*v.p = n
	return nil
}

type int64Value struct{ p *int64 }

func (v int64Value) String() string {
	if v.p == nil {
		return ""
	}
	return strconv.FormatInt(*v.p, 10)
}
func (v int64Value) Set(s string) error {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return err
	}
	*v.p = n
	return nil
}

// noCreateValue is the boolean --nats-no-create-stream, stored inverted.
type noCreateValue struct{ p *bool }

func (v noCreateValue) String() string {
	if v.p == nil {
		return "false"
	}
	return strconv.FormatBool(!*v.p)
}
func (v noCreateValue) Set(s string) error {
	b, err := strconv.ParseBool(s)
	if err != nil {
		return err
	}
	*v.p = !b
	return nil
}
func (v noCreateValue) IsBoolFlag() bool { return true }

// urlsValue is --nats: a comma-separated server list, or embedded[:ADDR]
// for the in-process server.
type urlsValue struct{ o *natsout.NATSOptions }

func (v urlsValue) String() string {
	if v.o == nil {
		return ""
	}
	if v.o.Embedded {
		return "embedded:" + v.o.EmbeddedAddr
	}
	// Credentials in URLs stay out of --help.
	var out []string
	for _, u := range v.o.URLs {
		if i := strings.Index(u, "@"); i >= 0 {
			if j := strings.Index(u, "://"); j >= 0 && j < i {
				u = u[:j+3] + "***" + u[i:]
			}
		}
		out = append(out, u)
	}
	return strings.Join(out, ",")
}

func (v urlsValue) Set(s string) error {
	s = strings.TrimSpace(s)
	v.o.Embedded, v.o.URLs = false, nil
	if s == "embedded" || strings.HasPrefix(s, "embedded:") {
		v.o.Embedded = true
		if addr, ok := strings.CutPrefix(s, "embedded:"); ok {
			if addr == "" {
				return errors.New("embedded: wants an address such as embedded:127.0.0.1:4222")
			}
			v.o.EmbeddedAddr = addr
		}
		return nil
	}
	for _, u := range strings.Split(s, ",") {
		if u = strings.TrimSpace(u); u != "" {
			v.o.URLs = append(v.o.URLs, u)
		}
	}
	if len(v.o.URLs) == 0 {
		return errors.New("empty server list")
	}
	return nil
}

// addNATSFlags registers the NATS output flags on fs and returns the
// options they fill. NATS output is wanted when, after parsing, the
// options have URLs or Embedded set. Call Validate after fs.Parse; it also
// reports a malformed environment variable.
func addNATSFlags(fs *flag.FlagSet) *natsout.NATSOptions {
	o := new(natsout.NATSOptions)
	*o = natsout.DefaultNATSOptions()
	nf := natsFlags{fs: fs, o: o}
	nf.add(urlsValue{o}, "nats", "NATS servers `URL[,URL]` (nats://, tls://), or embedded[:ADDR] to run a JetStream server in-process")
	nf.add(stringValue{&o.CredsFile}, "nats-creds", "NATS credentials `file` (JWT + seed)")
	nf.add(stringValue{&o.NKeySeedFile}, "nats-nkey", "NATS NKey seed `file`")
	nf.add(stringValue{&o.User}, "nats-user", "NATS user `name`")
	nf.add(secretValue{&o.Password}, "nats-password", "NATS `password`")
	nf.add(secretValue{&o.Token}, "nats-token", "NATS `token`")
	nf.add(stringValue{&o.TLSCA}, "nats-tls-ca", "CA certificate `file` to verify the NATS server")
	nf.add(stringValue{&o.TLSCert}, "nats-tls-cert", "client certificate `file` for NATS")
	nf.add(stringValue{&o.TLSKey}, "nats-tls-key", "client key `file` for NATS")
	nf.add(stringValue{&o.SubjectPrefix}, "subject-prefix", "NATS subject `prefix`")
	nf.add(stringValue{&o.SensorID}, "sensor-id", "sensor `id` in the Tschsensor-Sensor header (default hostname)")
	nf.add(stringValue{&o.JetStream}, "nats-jetstream", "JetStream use: `auto|on|off` (off: core NATS, at most once)")
	nf.add(stringValue{&o.Stream}, "nats-stream", "JetStream stream `name`")
	nf.add(noCreateValue{&o.CreateStream}, "nats-no-create-stream", "fail if the stream does not exist instead of creating it")
	nf.add(durationValue{&o.MaxAge}, "nats-max-age", "max age of messages in a created stream")
	nf.add(durationValue{&o.DuplicateWindow}, "nats-dup-window", "JetStream duplicate window of a created stream (re-publishing the same events within it stores nothing new)")
	nf.add(intValue{&o.Replicas}, "nats-replicas", "replicas of a created stream (3 on a JetStream cluster)")
	nf.add(intValue{&o.MaxInFlight}, "nats-max-inflight", "max unacknowledged publishes")
	nf.add(stringValue{&o.SpoolDir}, "spool-dir", "`dir` for records awaiting acknowledgement (default under the user cache dir)")
	nf.add(int64Value{&o.SpoolMaxBytes}, "spool-max-bytes", "bound on the spool; past it records are dropped and counted")
	nf.add(durationValue{&o.AckTimeout}, "nats-ack-timeout", "how long shutdown waits for acknowledgements")
	return o
}

// runTail implements `tschsensor tail`: it prints the JSON payload of each
// message the sensor published, one per line.
func runTail(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("tail", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := addNATSFlags(fs)
	since := fs.String("since", "", "read the stream from an RFC 3339 `time`, a duration back from now (15m), or all (needs JetStream)")
	subject := fs.String("subject", "", "subject `filter` relative to the prefix, e.g. alert.> (default everything)")
	count := fs.Int("count", 0, "exit after `n` messages (0: until interrupted)")
	verbose := fs.Bool("v", false, "log connection details to stderr")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: tschsensor tail [--nats URL] [--since TIME|DURATION|all] [--subject FILTER] [--count N]\n\n")
		fs.PrintDefaults()
	}
	if rc, ok := parseFlags(fs, args, false, stderr); !ok {
		return rc
	}
	if len(o.URLs) == 0 && !o.Embedded {
		o.URLs = []string{"nats://" + natsout.DefaultEmbeddedAddr}
	}
	t := natsout.TailOptions{Subject: *subject, Count: *count}
	var err error
	if t.Since, t.All, err = natsout.ParseSince(*since, time.Now()); err != nil {
		fmt.Fprintf(stderr, "tschsensor tail: %v\n", err)
		return 2
	}
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelInfo
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := natsout.Tail(ctx, *o, t, stdout, log); err != nil {
		fmt.Fprintf(stderr, "tschsensor tail: %v\n", err)
		return 1
	}
	return 0
}
