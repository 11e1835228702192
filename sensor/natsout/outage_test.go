package natsout

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// waitFor polls cond until it holds, failing the test after a generous
// bound: readiness, never a timed assertion.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("still waiting for %s after 60s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// downServer starts a JetStream server on a port it picks itself, then
// stops it: a place where a server will be, but is not yet.
func downServer(t *testing.T) (port int, url string) {
	t.Helper()
	srv := testServer(t, &server.Options{}, t.TempDir())
	port, url = serverPort(t, srv), srv.ClientURL()
	srv.Shutdown()
	srv.WaitForShutdown()
	return port, url
}

// TestNATSSinkStartsWithoutServer: the sink comes up while nothing
// answers, spools, says it is not connected, and delivers everything once
// the server starts (issue 16: it used to exit before decoding anything).
func TestNATSSinkStartsWithoutServer(t *testing.T) {
	port, url := downServer(t)
	o := testOptions(t, url)
	o.AckTimeout = 5 * time.Second
	log, tl := newTestLog()
	s, err := NewNATSSink(context.Background(), o, log)
	if err != nil {
		t.Fatalf("sink refused to start without its server: %v", err)
	}
	if s.Connected() {
		t.Fatal("Connected() with no server")
	}
	recs := testRecords("down", 0, 600)
	publishAll(t, s, recs[:300])
	if st := s.Stats(); st.Spooled != 300 || st.Dropped != 0 {
		t.Fatalf("while down: %+v, want 300 spooled", st)
	}
	testServer(t, &server.Options{Port: port}, t.TempDir())
	waitFor(t, "the sink to connect and create the stream", s.Connected)
	publishAll(t, s, recs[300:])
	closeSink(t, s)
	if st := s.Stats(); st.Resent < 300 || st.Dropped != 0 || st.SpoolRecords != 0 {
		t.Fatalf("stats %+v", st)
	}
	checkDelivered(t, readStream(t, url, DefaultStream), recs, DefaultSubjectPrefix)
	for _, msg := range []string{"server unreachable", "nats: connected", "created stream", "re-sent spooled records"} {
		if tl.count(msg) == 0 {
			t.Errorf("nothing logged about %q:\n%s", msg, tl.String())
		}
	}
}

// TestNATSSinkStreamRecreated: the stream disappears under a running sink
// (deleted, then the server restarted with an empty store); the sink
// creates it again and every record published after stays deliverable.
// With stream creation off it spools instead and keeps the records.
func TestNATSSinkStreamRecreated(t *testing.T) {
	s, srv := outageSink(t)
	port, url := serverPort(t, srv), srv.ClientURL()
	recs := testRecords("gone", 0, 900)
	publishAll(t, s, recs[:300])
	waitFor(t, "acks", func() bool { return s.Stats().Acked == 300 })

	deleteStream(t, url, DefaultStream)
	publishAll(t, s, recs[300:600])
	waitFor(t, "the stream to be recreated and the records re-sent", func() bool {
		st := s.Stats()
		return s.Connected() && st.SpoolRecords == 0 && st.InFlight == 0 && st.Acked >= 600
	})
	checkDelivered(t, readStream(t, url, DefaultStream), recs[300:600], DefaultSubjectPrefix)

	// A new, empty store behind the same address.
	srv.Shutdown()
	srv.WaitForShutdown()
	testServer(t, &server.Options{Port: port}, t.TempDir())
	publishAll(t, s, recs[600:])
	closeSink(t, s)
	if st := s.Stats(); st.Dropped != 0 || st.SpoolRecords != 0 {
		t.Fatalf("stats %+v", st)
	}
	checkDelivered(t, readStream(t, url, DefaultStream), recs[600:], DefaultSubjectPrefix)

	// Creation off: the records wait in the spool, none is lost.
	o2 := testOptions(t, url)
	o2.CreateStream, o2.AckTimeout = false, 200*time.Millisecond
	s2, err := NewNATSSink(context.Background(), o2, nil)
	if err != nil {
		t.Fatal(err)
	}
	deleteStream(t, url, DefaultStream)
	publishAll(t, s2, recs[:100])
	waitFor(t, "the sink to notice the stream is gone", func() bool { return !s2.Connected() })
	if err := s2.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st := s2.Stats(); st.Dropped != 0 || st.SpoolRecords+int64(st.Acked) != 100 || st.SpoolRecords == 0 {
		t.Fatalf("creation off: %+v, want the records kept in the spool", st)
	}
	if streamExists(t, url, DefaultStream) {
		t.Fatal("stream recreated with creation off")
	}
}

// TestNATSSinkStreamGoneSingleResend: while the stream is gone, a record
// goes to the server once, is answered "no responders", and is sent again
// only from the sink's spool after the sink recreated the stream.
// nats.go's own retries of such a publish (two by default, 250 ms apart)
// used to run behind the sink's back: their copies could land in the
// recreated stream ahead of the records re-sent from the spool, which CI
// saw as a stream starting in the middle of the outage. Counted on the
// sink's connection: at most two copies of each record (plus the few
// stream API requests), and the stream holds each record once, in order.
func TestNATSSinkStreamGoneSingleResend(t *testing.T) {
	s, srv := outageSink(t)
	url := srv.ClientURL()
	recs := testRecords("single", 0, 400)
	deleteStream(t, url, DefaultStream)
	before := s.nc.Stats().OutMsgs
	publishAll(t, s, recs)
	waitFor(t, "the stream to be recreated and the records re-sent", func() bool {
		st := s.Stats()
		return s.Connected() && st.SpoolRecords == 0 && st.InFlight == 0 && st.Acked == uint64(len(recs))
	})
	sent := s.nc.Stats().OutMsgs - before
	closeSink(t, s)
	if st := s.Stats(); st.Dropped != 0 || st.Acked != uint64(len(recs)) {
		t.Fatalf("stats %+v, want every record acked once", st)
	}
	// Stream look-up and creation take a handful of API requests.
	const apiSlack = 50
	if limit := uint64(2*len(recs) + apiSlack); sent > limit {
		t.Errorf("the sink's connection sent %d messages for %d records, want at most %d: "+
			"something other than the spool re-sent records", sent, len(recs), limit)
	}
	checkExactly(t, readStream(t, url, DefaultStream), recs, DefaultSubjectPrefix)
}

// TestNATSSinkStreamGoneWithListener: with a core subscriber on the
// sink's subjects (tschsensor tail in core mode, a SIEM), a missing stream
// does not answer "no responders": publishes just get no ack. The sink
// must still look the stream up, recreate it and deliver every record,
// in order, instead of re-sending into the void.
func TestNATSSinkStreamGoneWithListener(t *testing.T) {
	s, srv := outageSink(t)
	url := srv.ClientURL()
	listener, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer listener.Close()
	if _, err := listener.Subscribe(DefaultSubjectPrefix+".>", func(*nats.Msg) {}); err != nil {
		t.Fatal(err)
	}
	if err := listener.Flush(); err != nil {
		t.Fatal(err)
	}
	recs := testRecords("listened", 0, 200)
	deleteStream(t, url, DefaultStream)
	publishAll(t, s, recs)
	closeSink(t, s)
	if st := s.Stats(); st.Dropped != 0 || st.SpoolRecords != 0 || st.Acked != uint64(len(recs)) {
		t.Fatalf("stats %+v, want every record delivered", st)
	}
	checkDelivered(t, readStream(t, url, DefaultStream), recs, DefaultSubjectPrefix)
}

// TestNATSSinkOtherStreamNotAcked: when another stream captures the
// sink's subjects in place of its own, the server must not store records
// there as if delivered: they wait in the spool, uncounted as acked,
// until the sink's stream can be created again.
func TestNATSSinkOtherStreamNotAcked(t *testing.T) {
	s, srv := outageSink(t)
	url := srv.ClientURL()
	recs := testRecords("other", 0, 200)
	publishAll(t, s, recs[:100])
	waitFor(t, "acks", func() bool { return s.Stats().Acked == 100 })

	deleteStream(t, url, DefaultStream)
	js, done := jetStreamClient(t, url)
	defer done()
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "OTHER", Subjects: []string{DefaultSubjectPrefix + ".>"}}); err != nil {
		t.Fatal(err)
	}
	publishAll(t, s, recs[100:])
	waitFor(t, "every record acked or spooled", func() bool {
		st := s.Stats()
		return st.InFlight == 0 && int(st.Acked)+int(st.SpoolRecords) >= len(recs)
	})
	if st := s.Stats(); st.Acked != 100 || st.SpoolRecords != 100 || st.Dropped != 0 {
		t.Fatalf("stats %+v: want the 100 records published after the swap kept in the spool, not acked", st)
	}
	if s.Connected() {
		t.Error("Connected() while another stream holds our subjects")
	}
	other, err := js.Stream(ctx, "OTHER")
	if err != nil {
		t.Fatal(err)
	}
	if n := other.CachedInfo().State.Msgs; n != 0 {
		t.Errorf("stream OTHER stored %d of our records", n)
	}

	// Once the other stream is gone the sink creates its own again and
	// delivers what it kept.
	if err := js.DeleteStream(ctx, "OTHER"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the stream to be recreated and the spool re-sent", func() bool {
		st := s.Stats()
		return s.Connected() && st.SpoolRecords == 0 && st.InFlight == 0
	})
	closeSink(t, s)
	if st := s.Stats(); st.Acked != 200 || st.Dropped != 0 {
		t.Fatalf("stats %+v", st)
	}
	checkExactly(t, readStream(t, url, DefaultStream), recs[100:], DefaultSubjectPrefix)
}

func deleteStream(t *testing.T, url, name string) {
	t.Helper()
	js, done := jetStreamClient(t, url)
	defer done()
	if err := js.DeleteStream(context.Background(), name); err != nil {
		t.Fatalf("delete stream: %v", err)
	}
}

func streamExists(t *testing.T, url, name string) bool {
	t.Helper()
	js, done := jetStreamClient(t, url)
	defer done()
	_, err := js.Stream(context.Background(), name)
	return err == nil
}

// outageSink starts a JetStream server and a sink publishing to it. The
// sink waits a minute for acknowledgements at close, so that records held
// up by an outage the test makes are delivered, not dropped at shutdown.
func outageSink(t *testing.T) (*NATSSink, *server.Server) {
	t.Helper()
	srv := testServer(t, &server.Options{}, t.TempDir())
	o := testOptions(t, srv.ClientURL())
	o.AckTimeout = time.Minute
	s, err := NewNATSSink(context.Background(), o, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s, srv
}

// jetStreamClient connects a client of the test's own (not the sink's) to
// the server at url; done closes it.
func jetStreamClient(t testing.TB, url string) (js jetstream.JetStream, done func()) {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatalf("connect %s: %v", url, err)
	}
	if js, err = jetstream.New(nc); err != nil {
		nc.Close()
		t.Fatal(err)
	}
	return js, nc.Close
}
