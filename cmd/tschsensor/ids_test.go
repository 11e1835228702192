package main

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestReplayOrderIDs replays two captures alone, together and in both
// orders into one JetStream stream: event ids depend only on each record's
// own content, so A+B and B+A give exactly the ids of A and of B, and the
// stream stores every record once (issue 16: B after A used to store A's
// records again).
func TestReplayOrderIDs(t *testing.T) {
	srv := startJetStream(t)
	a := filepath.Join("..", "..", "pcaps", "impacket-atexec-smb2-clear.pcap")
	b := filepath.Join("..", "..", "pcaps", "impacket-schtask-tcp.pcap")
	spool := t.TempDir()
	replay := func(files ...string) []string {
		t.Helper()
		var out, errb bytes.Buffer
		args := append([]string{"replay", "--quiet", "--nats", srv.ClientURL(), "--spool-dir", spool, "--observer", "idtest"}, files...)
		if rc := run(args, &out, &errb); rc != 0 {
			t.Fatalf("replay %v: rc %d: %s", files, rc, errb.String())
		}
		var ids []string
		for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n") {
			var ev struct{ Event struct{ ID string } }
			if err := json.Unmarshal([]byte(l), &ev); err != nil {
				t.Fatal(err)
			}
			ids = append(ids, ev.Event.ID)
		}
		slices.Sort(ids)
		return ids
	}
	idsA, idsB := replay(a), replay(b)
	if len(idsA) == 0 || len(idsB) == 0 {
		t.Fatalf("captures gave %d and %d records", len(idsA), len(idsB))
	}
	union := slices.Concat(idsA, idsB)
	slices.Sort(union)
	if u := slices.Compact(slices.Clone(union)); len(u) != len(union) {
		t.Fatalf("ids of A and B overlap or repeat: %d distinct of %d", len(u), len(union))
	}
	for _, order := range [][]string{{a, b}, {b, a}} {
		if got := replay(order...); !slices.Equal(got, union) {
			t.Errorf("replay %v: ids differ from those of each capture alone:\n got %v\nwant %v", order, got, union)
		}
	}
	st := sensorStream(t, srv.ClientURL())
	info, err := st.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if int(info.State.Msgs) != len(union) {
		t.Errorf("after replaying A, B, A+B and B+A the stream holds %d messages, want %d (each record once)", info.State.Msgs, len(union))
	}
}
