package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tschsensor/tschsensor/internal/syncbuf"
	"github.com/tschsensor/tschsensor/internal/testpcap"
)

// downJetStream returns the address of a server that ran and stopped: the
// port it chose itself, where nothing listens now.
func downJetStream(t *testing.T) (int, string) {
	t.Helper()
	srv := startJetStream(t)
	port, url := srv.Addr().(*net.TCPAddr).Port, srv.ClientURL()
	srv.Shutdown()
	srv.WaitForShutdown()
	return port, url
}

func streamIDs(t *testing.T, url string) map[string]int {
	t.Helper()
	st := sensorStream(t, url)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n := int(st.CachedInfo().State.Msgs)
	ids := map[string]int{}
	if n == 0 {
		return ids
	}
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	for got := 0; got < n; {
		batch, err := cons.Fetch(n-got, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		k := 0
		for m := range batch.Messages() {
			ids[m.Headers().Get("Nats-Msg-Id")]++
			k++
		}
		if k == 0 {
			t.Fatalf("stream says %d messages, read %d", n, got)
		}
		got += k
	}
	return ids
}

func lineIDs(t *testing.T, out string) []string {
	t.Helper()
	var ids []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		var ev struct{ Event struct{ ID string } }
		if err := json.Unmarshal([]byte(l), &ev); err != nil {
			t.Fatalf("bad line %q: %v", l, err)
		}
		ids = append(ids, ev.Event.ID)
	}
	return ids
}

// distinctRecords counts the distinct event ids among output lines, and
// checks that lines sharing an id are the same record on the wire: the
// same call seen in two captures of the same traffic (midstream-* are cut
// from others; a capture that starts mid-connection may see less of it,
// such as the bind's user, so only what identifies the call is compared).
func distinctRecords(t *testing.T, lines []string) int {
	t.Helper()
	seen := map[string]string{}
	for _, l := range lines {
		var ev struct {
			Timestamp           string `json:"@timestamp"`
			Event               struct{ Kind, ID string }
			Source, Destination struct {
				IP   string
				Port int
			}
			DCERPC struct {
				CallID uint32 `json:"call_id"`
				Opnum  uint16
			} `json:"dcerpc"`
			SMB  struct{ SessionID, FileID string } `json:"smb"`
			Rule struct{ ID string }
		}
		if err := json.Unmarshal([]byte(l), &ev); err != nil {
			t.Fatal(err)
		}
		key := fmt.Sprintf("%s %s %s:%d>%s:%d %d/%d %s/%s %s", ev.Event.Kind, ev.Timestamp, ev.Source.IP, ev.Source.Port,
			ev.Destination.IP, ev.Destination.Port, ev.DCERPC.CallID, ev.DCERPC.Opnum, ev.SMB.SessionID, ev.SMB.FileID, ev.Rule.ID)
		if prev, ok := seen[ev.Event.ID]; ok && prev != key {
			t.Errorf("id %s names two different records:\n%s\n%s", ev.Event.ID, prev, key)
		}
		seen[ev.Event.ID] = key
	}
	return len(seen)
}

// summaryCount reads "<label> N" from the summary.
func summaryCount(t *testing.T, summary, label string) int {
	t.Helper()
	m := regexp.MustCompile(regexp.QuoteMeta(label) + ` (\d+)`).FindStringSubmatch(summary)
	if m == nil {
		t.Fatalf("no %q in the summary:\n%s", label, summary)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// TestReplayNATSDownAtStart: replay --nats while nothing answers decodes,
// spools, and delivers every record once the server comes up before the
// ack timeout; exit 0 (issue 16: it exited 2 before decoding anything).
func TestReplayNATSDownAtStart(t *testing.T) {
	port, url := downJetStream(t)
	files, _ := filepath.Glob(filepath.Join("..", "..", "pcaps", "*.pcap"))
	var out, errb syncbuf.Buffer
	args := append([]string{"replay", "--nats", url, "--spool-dir", t.TempDir(), "--nats-ack-timeout", "60s", "--observer", "down"}, files...)
	rc := make(chan int, 1)
	go func() { rc <- run(args, &out, &errb) }()
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(errb.String(), "server unreachable") {
		if time.Now().After(deadline) {
			t.Fatalf("no word of the unreachable server:\n%s", errb.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	jetStreamAt(t, port)
	if got := <-rc; got != 0 {
		t.Fatalf("rc %d, want 0:\n%s", got, errb.String())
	}
	ids := lineIDs(t, out.String())
	stored := streamIDs(t, url)
	if n := distinctRecords(t, strings.Split(strings.TrimSpace(out.String()), "\n")); len(stored) != n {
		t.Errorf("stream holds %d records, stdout %d distinct", len(stored), n)
	}
	for _, id := range ids {
		if stored[id] != 1 {
			t.Errorf("record %s stored %d times", id, stored[id])
		}
	}
	s := errb.String()
	if p, a, sp := summaryCount(t, s, "nats: published"), summaryCount(t, s, "acked"), summaryCount(t, s, "spooled"); p != len(ids) || a != len(ids) || sp == 0 {
		t.Errorf("summary published %d acked %d spooled %d, want %d, %d, > 0:\n%s", p, a, sp, len(ids), len(ids), s)
	}
	if summaryCount(t, s, "dropped events") != 0 {
		t.Errorf("drops reported:\n%s", s)
	}
}

// TestReplaySpoolOverflow: NATS down and a 1 MiB spool: the records past
// the bound are dropped, and the count agrees between the summary and the
// spool's later delivery into the stream; replay exits 3 (issue 16: it said
// "dropped events 0" and exited 0).
func TestReplaySpoolOverflow(t *testing.T) {
	port, url := downJetStream(t)
	// A hundred copies of an atexec capture, each on its own client port
	// and ten minutes apart: about 1.8 MB of distinct records, past the
	// 1 MiB spool.
	src := filepath.Join("..", "..", "pcaps", "impacket-atexec-smb2-clear.pcap")
	many := []string{copiesOf(t, src, 100)}
	files := []string{src}
	spool := t.TempDir()
	var out, errb bytes.Buffer
	args := append([]string{"replay", "--nats", url, "--spool-dir", spool, "--spool-max-bytes", "1048576",
		"--nats-ack-timeout", "100ms", "--observer", "overflow"}, many...)
	if rc := run(args, &out, &errb); rc != exitDropped {
		t.Fatalf("rc %d, want %d:\n%s", rc, exitDropped, errb.String())
	}
	ids := lineIDs(t, out.String())
	s := errb.String()
	dropped := summaryCount(t, s, "dropped events")
	spooled := summaryCount(t, s, "spooled")
	if dropped == 0 || summaryCount(t, s, "spool") != dropped || spooled+dropped != len(ids) || summaryCount(t, s, "nats: published") != len(ids) {
		t.Fatalf("stdout %d records; summary dropped %d, spooled %d:\n%s", len(ids), dropped, spooled, s)
	}
	t.Logf("stdout %d records, spooled %d, dropped %d", len(ids), spooled, dropped)
	if !strings.Contains(s, fmt.Sprintf("%d records dropped", dropped)) {
		t.Errorf("no drop line:\n%s", s)
	}

	// The server comes back: the next run delivers the spool, which holds
	// the first records in output order.
	jetStreamAt(t, port)
	var out2, errb2 bytes.Buffer
	if rc := run([]string{"replay", "--quiet", "--nats", url, "--spool-dir", spool, "--observer", "overflow", files[0]}, &out2, &errb2); rc != 0 {
		t.Fatalf("second run rc %d:\n%s", rc, errb2.String())
	}
	want := map[string]bool{}
	for _, id := range ids[:spooled] {
		want[id] = true
	}
	for _, id := range lineIDs(t, out2.String()) {
		want[id] = true
	}
	stored := streamIDs(t, url)
	if len(stored) != len(want) {
		t.Errorf("stream holds %d distinct records, the spooled part of stdout and the second run %d", len(stored), len(want))
	}
	for id, n := range stored {
		if !want[id] || n != 1 {
			t.Errorf("stored %s %d times (expected: %v)", id, n, want[id])
		}
	}
}

// copiesOf writes n copies of src, ten minutes apart, each on its own
// client port (see testpcap.Copies).
func copiesOf(t *testing.T, src string, n int) string {
	t.Helper()
	name := filepath.Join(t.TempDir(), "copies.pcap")
	if err := testpcap.Copies(src, name, n, 10*time.Minute); err != nil {
		t.Fatal(err)
	}
	return name
}

// TestReplayNATSRestartMidRun: the server is shut down while a replay of
// 6,000 records publishes, and started again on the same store: every
// record is in the stream once, and the summary's counts are stdout's.
func TestReplayNATSRestartMidRun(t *testing.T) {
	store := t.TempDir()
	srv := jetStreamServer(t, -1, store)
	port, url := srv.Addr().(*net.TCPAddr).Port, srv.ClientURL()
	capture := copiesOf(t, filepath.Join("..", "..", "pcaps", "impacket-atexec-smb2-clear.pcap"), 1000)

	var out, errb syncbuf.Buffer
	args := []string{"replay", "--nats", url, "--spool-dir", t.TempDir(), "--nats-ack-timeout", "60s", "--observer", "restart", capture}
	rc := make(chan int, 1)
	go func() { rc <- run(args, &out, &errb) }()
	// Shut the server down once part of the output is out (the stdout
	// sink flushes every 64 KiB), then start it again on the same store.
	deadline := time.Now().Add(60 * time.Second)
	for strings.Count(out.String(), "\n") < 1000 {
		if time.Now().After(deadline) {
			t.Fatalf("replay wrote nothing:\n%s", errb.String())
		}
		time.Sleep(time.Millisecond)
	}
	srv.Shutdown()
	srv.WaitForShutdown()
	t.Logf("server shut down after %d lines", strings.Count(out.String(), "\n"))
	jetStreamServer(t, port, store)
	if got := <-rc; got != 0 {
		t.Fatalf("rc %d:\n%s", got, errb.String())
	}
	ids := lineIDs(t, out.String())
	if len(ids) != 6000 {
		t.Fatalf("%d records on stdout, want 6000", len(ids))
	}
	stored := streamIDs(t, url)
	if len(stored) != len(ids) {
		t.Errorf("stream holds %d records, stdout %d", len(stored), len(ids))
	}
	for _, id := range ids {
		if stored[id] != 1 {
			t.Errorf("record %s stored %d times", id, stored[id])
		}
	}
	s := errb.String()
	if p, a := summaryCount(t, s, "nats: published"), summaryCount(t, s, "acked"); p != len(ids) || a != len(ids) || summaryCount(t, s, "dropped events") != 0 {
		t.Errorf("summary published %d acked %d, want %d:\n%s", p, a, len(ids), s)
	}
	t.Logf("spooled %d, re-sent %d", summaryCount(t, s, "spooled"), summaryCount(t, s, "re-sent"))
}
