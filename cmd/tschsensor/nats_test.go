package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tschsensor/tschsensor/sensor/natsout"
	"github.com/tschsensor/tschsensor/sensor/output"
)

func parseNATSFlags(t *testing.T, args ...string) (*natsout.NATSOptions, *bytes.Buffer) {
	t.Helper()
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	var help bytes.Buffer
	fs.SetOutput(&help)
	o := addNATSFlags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatalf("parse %v: %v", args, err)
	}
	fs.PrintDefaults()
	return o, &help
}

func TestNATSFlagsEnv(t *testing.T) {
	t.Setenv("TSCHSENSOR_NATS_URL", "nats://a:4222,nats://b:4222")
	t.Setenv("TSCHSENSOR_NATS_PASSWORD", "hunter2")
	t.Setenv("TSCHSENSOR_NATS_USER", "sensor")
	t.Setenv("TSCHSENSOR_NATS_MAX_AGE", "48h")
	t.Setenv("TSCHSENSOR_SPOOL_DIR", "/var/spool/x")
	t.Setenv("TSCHSENSOR_NATS_NO_CREATE_STREAM", "true")

	o, help := parseNATSFlags(t, "--nats-max-age", "72h", "--subject-prefix", "ids.tsch")
	if strings.Join(o.URLs, " ") != "nats://a:4222 nats://b:4222" || o.User != "sensor" || o.Password != "hunter2" {
		t.Fatalf("env not applied: %+v", o)
	}
	if o.MaxAge != 72*time.Hour {
		t.Fatalf("flag did not override env: max age %v", o.MaxAge)
	}
	if o.SpoolDir != "/var/spool/x" || o.SubjectPrefix != "ids.tsch" || o.CreateStream {
		t.Fatalf("options %+v", o)
	}
	if o.DuplicateWindow != natsout.DefaultDuplicateWindow || o.MaxInFlight != natsout.DefaultMaxInFlight {
		t.Fatalf("defaults lost: %+v", o)
	}
	if strings.Contains(help.String(), "hunter2") {
		t.Fatal("help output shows the password")
	}
	if !strings.Contains(help.String(), "TSCHSENSOR_NATS_DUP_WINDOW") {
		t.Fatal("help output does not name the environment variables")
	}
	if err := o.Validate(); err != nil {
		t.Fatal(err)
	}

	o, _ = parseNATSFlags(t, "--nats", "embedded:127.0.0.1:5222")
	if !o.Embedded || o.EmbeddedAddr != "127.0.0.1:5222" || len(o.URLs) != 0 {
		t.Fatalf("embedded: %+v", o)
	}

	t.Setenv("TSCHSENSOR_NATS_DUP_WINDOW", "a while")
	o, _ = parseNATSFlags(t)
	if err := o.Validate(); err == nil || !strings.Contains(err.Error(), "TSCHSENSOR_NATS_DUP_WINDOW") {
		t.Fatalf("bad env value: %v", err)
	}
}

func TestRunTail(t *testing.T) {
	srv := startJetStream(t)

	o := natsout.DefaultNATSOptions()
	o.URLs, o.SensorID, o.SpoolDir = []string{srv.ClientURL()}, "tail-test", filepath.Join(t.TempDir(), "spool")
	s, err := natsout.NewNATSSink(context.Background(), o, nil)
	if err != nil {
		t.Fatal(err)
	}
	var want bytes.Buffer
	for i := range 10 {
		r := output.Record{Kind: "event", Subject: "event.atsvc.netrjobadd", ID: fmt.Sprint("e", i), JSON: fmt.Appendf(nil, `{"n":%d}`, i)}
		if i%3 == 0 {
			r = output.Record{Kind: "alert", Subject: "alert.atexec", ID: fmt.Sprint("a", i), JSON: fmt.Appendf(nil, `{"alert":%d}`, i)}
			fmt.Fprintf(&want, "%s\n", r.JSON)
		}
		if err := s.Publish(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}

	var out, errOut bytes.Buffer
	rc := runTail([]string{"--nats", srv.ClientURL(), "--since", "all", "--subject", "alert.>", "--count", "4"}, &out, &errOut)
	if rc != 0 || out.String() != want.String() {
		t.Fatalf("rc %d, stdout\n%s\nwant\n%s\nstderr %s", rc, out.String(), want.String(), errOut.String())
	}
	if rc := runTail([]string{"--since", "soon"}, io.Discard, io.Discard); rc != 2 {
		t.Fatalf("bad --since: rc %d", rc)
	}
}
