package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// TestReplayToJetStream replays the project's captures into a real
// JetStream server: the stream holds exactly the lines written on stdout, on
// the subjects their kind and names give; a second replay adds nothing.
func TestReplayToJetStream(t *testing.T) {
	srv := startJetStream(t)

	files, _ := filepath.Glob(filepath.Join("..", "..", "pcaps", "*.pcap"))
	if len(files) == 0 {
		t.Fatal("no captures in pcaps/")
	}
	spool := t.TempDir()
	replay := func() []string {
		var out, errb bytes.Buffer
		args := append([]string{"replay", "--quiet", "--nats", srv.ClientURL(), "--spool-dir", spool, "--observer", "jstest"}, files...)
		if rc := run(args, &out, &errb); rc != 0 {
			t.Fatalf("replay rc %d: %s", rc, errb.String())
		}
		return strings.Split(strings.TrimSpace(out.String()), "\n")
	}
	lines := replay()

	ctx := context.Background()
	stream := sensorStream(t, srv.ClientURL())
	info, err := stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Captures cut from the same traffic (midstream-*) hold calls of
	// others: the same call has the same id and is stored once.
	records := distinctRecords(t, lines)
	if int(info.State.Msgs) != records {
		t.Fatalf("stream holds %d messages, stdout had %d distinct records (%d lines)", info.State.Msgs, records, len(lines))
	}

	// Each stdout line is in the stream, on its subject, with its id.
	want := map[string]string{}
	for _, l := range lines {
		var ev struct {
			Event  struct{ Kind, ID string }
			Rule   struct{ ID string }
			DCERPC struct {
				Interface struct{ Name string }
				Operation string
				Opnum     int
			} `json:"dcerpc"`
		}
		if err := json.Unmarshal([]byte(l), &ev); err != nil {
			t.Fatal(err)
		}
		op := strings.ToLower(ev.DCERPC.Operation)
		if op == "" {
			// Calls of an interface never named (no bind captured).
			op = fmt.Sprintf("opnum%d", ev.DCERPC.Opnum)
		}
		subj := "tschsensor.event." + strings.ToLower(ev.DCERPC.Interface.Name) + "." + op
		if ev.Event.Kind == "alert" {
			subj = "tschsensor.alert." + ev.Rule.ID
		}
		want[ev.Event.ID] = subj
	}
	cons, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.Fetch(len(lines), jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	got := 0
	for m := range batch.Messages() {
		id := m.Headers().Get("Nats-Msg-Id")
		if subj, ok := want[id]; !ok || subj != m.Subject() {
			t.Errorf("message %s on %s: want subject %q", id, m.Subject(), want[id])
		}
		got++
	}
	if got != records {
		t.Errorf("fetched %d messages, want %d", got, records)
	}

	// The same capture again: JetStream's duplicate window keeps it single.
	if again := replay(); len(again) != len(lines) {
		t.Fatalf("second replay wrote %d lines, first %d", len(again), len(lines))
	}
	info, err = stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if int(info.State.Msgs) != records {
		t.Errorf("after a second replay the stream holds %d messages, want %d", info.State.Msgs, records)
	}
}
