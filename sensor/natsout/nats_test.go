package natsout

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/tschsensor/tschsensor/internal/syncbuf"
)

// testServer starts an in-process nats-server on loopback. A zero Port
// picks a free one; JetStream stores in dir when jsDir is set.
func testServer(t testing.TB, opts *server.Options, jsDir string) *server.Server {
	t.Helper()
	if opts.Host == "" {
		opts.Host = "127.0.0.1"
	}
	if opts.Port == 0 {
		opts.Port = -1
	}
	opts.NoSigs, opts.NoLog = true, true
	if jsDir != "" {
		opts.JetStream, opts.StoreDir = true, jsDir
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		t.Fatalf("nats-server: %v", err)
	}
	srv.Start()
	if !srv.ReadyForConnections(20 * time.Second) {
		srv.Shutdown()
		t.Fatalf("nats-server on %s:%d not ready", opts.Host, opts.Port)
	}
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	return srv
}

func serverPort(t testing.TB, srv *server.Server) int {
	t.Helper()
	return srv.Addr().(*net.TCPAddr).Port
}

// testLog keeps what the sink logs, for asserting on warnings.
type testLog struct{ syncbuf.Buffer }

func (l *testLog) count(s string) int { return strings.Count(l.String(), s) }

func newTestLog() (*slog.Logger, *testLog) {
	tl := &testLog{}
	return slog.New(slog.NewTextHandler(tl, &slog.HandlerOptions{Level: slog.LevelDebug})), tl
}

// testOptions are options for a sink on url with its own spool.
func testOptions(t testing.TB, urls ...string) NATSOptions {
	o := DefaultNATSOptions()
	o.URLs = urls
	o.SensorID = "sensor-test"
	o.SpoolDir = filepath.Join(t.TempDir(), "spool")
	return o
}

// testRecords builds n records shaped like the sensor's output: events
// and alerts with stable ids, and metrics without one.
func testRecords(tag string, from, n int) []Record {
	recs := make([]Record, 0, n)
	for i := from; i < from+n; i++ {
		var r Record
		switch i % 10 {
		case 0:
			r = Record{Kind: "metric", Subject: "stats"}
		case 1:
			r = Record{Kind: "alert", Subject: "alert.atexec", ID: fmt.Sprintf("%s-alert-%06d", tag, i)}
		default:
			r = Record{Kind: "event", Subject: "event.itaskschedulerservice.schrpcregistertask", ID: fmt.Sprintf("%s-ev-%06d", tag, i)}
		}
		body, _ := json.Marshal(map[string]any{
			"event": map[string]any{"id": r.ID, "kind": r.Kind, "seq": i},
			"tsch":  map[string]any{"opnum": 1, "path": `\Microsoft\Windows\Test` + fmt.Sprint(i)},
		})
		r.JSON = body
		recs = append(recs, r)
	}
	return recs
}

func publishAll(t testing.TB, s *NATSSink, recs []Record) {
	t.Helper()
	for _, r := range recs {
		if err := s.Publish(r); err != nil {
			t.Fatalf("publish %s: %v", r.ID, err)
		}
	}
}

func closeSink(t testing.TB, s *NATSSink) {
	t.Helper()
	if err := s.Close(context.Background()); err != nil {
		t.Fatalf("close: %v", err)
	}
}

type storedMsg struct {
	subject, id, sensor, kind string
	seq                       int
	data                      []byte
}

// readStream returns every message of the stream, in stream order.
func readStream(t testing.TB, url, stream string) []storedMsg {
	t.Helper()
	js, done := jetStreamClient(t, url)
	defer done()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatalf("stream %s: %v", stream, err)
	}
	want := st.CachedInfo().State.Msgs
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	var out []storedMsg
	for uint64(len(out)) < want {
		batch, err := cons.Fetch(int(min(want-uint64(len(out)), 1000)), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatalf("fetch: %v", err)
		}
		got := 0
		for m := range batch.Messages() {
			got++
			var body struct {
				Event struct {
					Seq int `json:"seq"`
				} `json:"event"`
			}
			if err := json.Unmarshal(m.Data(), &body); err != nil {
				t.Fatalf("stored payload is not our JSON: %v: %q", err, m.Data())
			}
			h := m.Headers()
			out = append(out, storedMsg{subject: m.Subject(), id: h.Get(HeaderMsgID), sensor: h.Get(HeaderSensor),
				kind: h.Get(HeaderKind), seq: body.Event.Seq, data: m.Data()})
		}
		if batch.Error() != nil {
			t.Fatalf("fetch: %v", batch.Error())
		}
		if got == 0 {
			t.Fatalf("stream says %d messages, read %d", want, len(out))
		}
	}
	return out
}

// checkExactly asserts the stream holds each record once, in order, on
// its subject with its headers.
func checkExactly(t *testing.T, msgs []storedMsg, recs []Record, prefix string) {
	t.Helper()
	checkStored(t, msgs, recs, prefix, false)
}

// checkDelivered is checkExactly for runs with an outage: a metric (no
// Nats-Msg-Id) in flight when the server went away may be stored twice,
// JetStream cannot tell; records with an id still appear exactly once.
func checkDelivered(t *testing.T, msgs []storedMsg, recs []Record, prefix string) {
	t.Helper()
	checkStored(t, msgs, recs, prefix, true)
}

func checkStored(t *testing.T, msgs []storedMsg, recs []Record, prefix string, metricDups bool) {
	t.Helper()
	if metricDups {
		seen := make(map[int]bool)
		kept := msgs[:0:0]
		for _, m := range msgs {
			if m.id == "" && seen[m.seq] {
				continue
			}
			seen[m.seq] = true
			kept = append(kept, m)
		}
		if d := len(msgs) - len(kept); d > 0 {
			t.Logf("%d metric records stored twice (no message id)", d)
		}
		msgs = kept
	}
	if len(msgs) != len(recs) {
		t.Fatalf("stream holds %d messages, want %d", len(msgs), len(recs))
	}
	for i, m := range msgs {
		r := recs[i]
		if m.subject != prefix+"."+r.Subject || m.id != r.ID || m.kind != r.Kind || !bytes.Equal(m.data, r.JSON) {
			t.Fatalf("message %d: got subject %q id %q kind %q, want %q %q %q (payload equal: %v)",
				i, m.subject, m.id, m.kind, prefix+"."+r.Subject, r.ID, r.Kind, bytes.Equal(m.data, r.JSON))
		}
		if m.sensor != "sensor-test" {
			t.Fatalf("message %d: sensor header %q", i, m.sensor)
		}
	}
}

func TestNATSSinkJetStreamExactlyOnce(t *testing.T) {
	srv := testServer(t, &server.Options{}, t.TempDir())
	recs := testRecords("once", 0, 2000)
	// Metrics carry no id, so only the first publish of them is kept:
	// re-publishing sends events and alerts only.
	var withID []Record
	for _, r := range recs {
		if r.ID != "" {
			withID = append(withID, r)
		}
	}

	o := testOptions(t, srv.ClientURL())
	o.MaxInFlight = 64 // make the in-flight bound bite
	s, err := NewNATSSink(context.Background(), o, nil)
	if err != nil {
		t.Fatal(err)
	}
	publishAll(t, s, recs)
	closeSink(t, s)
	st := s.Stats()
	if st.Published != 2000 || st.Acked != 2000 || st.Dropped != 0 || st.SpoolRecords != 0 {
		t.Fatalf("stats after first run: %+v", st)
	}
	checkExactly(t, readStream(t, srv.ClientURL(), DefaultStream), recs, DefaultSubjectPrefix)

	// A second run (a replay of the same capture) reuses the stream and
	// stores nothing new.
	s, err = NewNATSSink(context.Background(), o, nil)
	if err != nil {
		t.Fatal(err)
	}
	publishAll(t, s, withID)
	closeSink(t, s)
	checkExactly(t, readStream(t, srv.ClientURL(), DefaultStream), recs, DefaultSubjectPrefix)
	if err := s.Publish(recs[1]); !errors.Is(err, ErrSinkClosed) {
		t.Fatalf("publish after close: %v", err)
	}
}

// TestNATSSinkServerRestart stops the server in the middle of a run and
// starts a new one on the same port and store: the records published while
// it was down come from the spool, and the stream ends up with every
// record once, in order.
func TestNATSSinkServerRestart(t *testing.T) {
	store := t.TempDir()
	srv := testServer(t, &server.Options{}, store)
	port := serverPort(t, srv)
	url := srv.ClientURL()
	recs := testRecords("restart", 0, 900)

	o := testOptions(t, url)
	o.AckTimeout = time.Minute
	s, err := NewNATSSink(context.Background(), o, nil)
	if err != nil {
		t.Fatal(err)
	}
	publishAll(t, s, recs[:300])
	srv.Shutdown()
	srv.WaitForShutdown()
	publishAll(t, s, recs[300:600])

	testServer(t, &server.Options{Port: port}, store)
	publishAll(t, s, recs[600:])
	closeSink(t, s)

	st := s.Stats()
	if st.Spooled == 0 || st.Resent == 0 || st.Dropped != 0 || st.SpoolRecords != 0 {
		t.Fatalf("spool not used as expected: %+v", st)
	}
	checkDelivered(t, readStream(t, url, DefaultStream), recs, DefaultSubjectPrefix)
}

// TestNATSSinkResendsEarlierRun closes a sink while the server is down and
// checks that the next sink on the same spool delivers what was left.
func TestNATSSinkResendsEarlierRun(t *testing.T) {
	store := t.TempDir()
	srv := testServer(t, &server.Options{}, store)
	port, url := serverPort(t, srv), srv.ClientURL()
	recs := testRecords("earlier", 0, 120)

	o := testOptions(t, url)
	o.AckTimeout = 200 * time.Millisecond
	s, err := NewNATSSink(context.Background(), o, nil)
	if err != nil {
		t.Fatal(err)
	}
	publishAll(t, s, recs[:20])
	srv.Shutdown()
	srv.WaitForShutdown()
	publishAll(t, s, recs[20:])
	closeSink(t, s)
	if st := s.Stats(); st.SpoolRecords == 0 {
		t.Fatalf("nothing left in the spool with the server down: %+v", st)
	}

	testServer(t, &server.Options{Port: port}, store)
	o.AckTimeout = time.Minute
	s, err = NewNATSSink(context.Background(), o, nil)
	if err != nil {
		t.Fatal(err)
	}
	closeSink(t, s)
	checkDelivered(t, readStream(t, url, DefaultStream), recs, DefaultSubjectPrefix)
}

// TestNATSSinkSpoolBound fills a small spool with the server gone: Publish
// keeps returning, drops are counted, and the warning is rate-limited.
func TestNATSSinkSpoolBound(t *testing.T) {
	srv := testServer(t, &server.Options{}, t.TempDir())
	o := testOptions(t, srv.ClientURL())
	o.SpoolMaxBytes = 1 << 20
	o.AckTimeout = 100 * time.Millisecond
	log, tl := newTestLog()
	s, err := NewNATSSink(context.Background(), o, log)
	if err != nil {
		t.Fatal(err)
	}
	srv.Shutdown()
	srv.WaitForShutdown()
	big := bytes.Repeat([]byte("x"), 4000)
	const n = 1000
	for i := range n {
		rec := Record{Kind: "event", Subject: "event.big", ID: fmt.Sprint("big-", i),
			JSON: fmt.Appendf(nil, `{"i":%d,"pad":"%s"}`, i, big)}
		if err := s.Publish(rec); err != nil {
			t.Fatal(err)
		}
	}
	err = s.Close(context.Background())
	st := s.Stats()
	if err == nil || !strings.Contains(err.Error(), "dropped") {
		t.Fatalf("close should report drops, got %v (stats %+v)", err, st)
	}
	if st.Dropped == 0 || st.Spooled+st.Dropped != n || st.SpoolBytes > o.SpoolMaxBytes {
		t.Fatalf("stats %+v: want spooled+dropped = %d, spool within %d bytes", st, n, o.SpoolMaxBytes)
	}
	if warns := tl.count("dropping records"); warns == 0 || uint64(warns) >= st.Dropped/10 {
		t.Fatalf("%d drop warnings for %d drops: not rate-limited", warns, st.Dropped)
	}
}

func writeFile(t testing.TB, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// testPKI makes a CA, a server certificate for 127.0.0.1 and a client
// certificate, and writes them as PEM files.
type testPKI struct {
	dir                                      string
	caFile, srvCert, srvKey, cliCert, cliKey string
	pool                                     *x509.CertPool
}

func newTestPKI(t *testing.T) testPKI {
	t.Helper()
	dir := t.TempDir()
	p := testPKI{dir: dir, pool: x509.NewCertPool()}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "tschsensor test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	p.pool.AddCert(ca)
	p.caFile = writeFile(t, dir, "ca.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}))
	leaf := func(name string, serial int64, usage x509.ExtKeyUsage) (string, string) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
			IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kder, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		return writeFile(t, dir, name+".pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
			writeFile(t, dir, name+"-key.pem", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}))
	}
	p.srvCert, p.srvKey = leaf("server", 2, x509.ExtKeyUsageServerAuth)
	p.cliCert, p.cliKey = leaf("client", 3, x509.ExtKeyUsageClientAuth)
	return p
}

// TestNATSSinkAuth connects with each kind of credential, and checks that
// wrong credentials fail at NewNATSSink with an error that says so.
func TestNATSSinkAuth(t *testing.T) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	seed, _ := kp.Seed()
	other, _ := nkeys.CreateUser()
	otherSeed, _ := other.Seed()
	keys := t.TempDir()
	seedFile := writeFile(t, keys, "user.nk", seed)
	otherSeedFile := writeFile(t, keys, "other.nk", otherSeed)
	pki := newTestPKI(t)
	srvCert, err := tls.LoadX509KeyPair(pki.srvCert, pki.srvKey)
	if err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name    string
		srv     server.Options
		scheme  string
		good    func(*NATSOptions)
		bad     func(*NATSOptions)
		badWant string
	}{
		{
			name: "user-password", srv: server.Options{Username: "sensor", Password: "s3cret"},
			good:    func(o *NATSOptions) { o.User, o.Password = "sensor", "s3cret" },
			bad:     func(o *NATSOptions) { o.User, o.Password = "sensor", "wrong" },
			badWant: "authorization",
		},
		{
			name: "token", srv: server.Options{Authorization: "t0ken"},
			good:    func(o *NATSOptions) { o.Token = "t0ken" },
			bad:     func(o *NATSOptions) { o.Token = "other" },
			badWant: "authorization",
		},
		{
			name: "nkey", srv: server.Options{Nkeys: []*server.NkeyUser{{Nkey: pub}}},
			good:    func(o *NATSOptions) { o.NKeySeedFile = seedFile },
			bad:     func(o *NATSOptions) { o.NKeySeedFile = otherSeedFile },
			badWant: "authorization",
		},
		{
			name: "mutual-tls", scheme: "tls",
			srv: server.Options{TLS: true, TLSVerify: true, TLSTimeout: 5, TLSConfig: &tls.Config{
				Certificates: []tls.Certificate{srvCert}, ClientCAs: pki.pool,
				ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12,
			}},
			good: func(o *NATSOptions) { o.TLSCA, o.TLSCert, o.TLSKey = pki.caFile, pki.cliCert, pki.cliKey },
			// Without our CA the server's certificate is not trusted.
			bad:     func(o *NATSOptions) { o.TLSCert, o.TLSKey = pki.cliCert, pki.cliKey },
			badWant: "x509",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := testServer(t, &tc.srv, t.TempDir())
			url := fmt.Sprintf("nats://127.0.0.1:%d", serverPort(t, srv))
			if tc.scheme != "" {
				url = fmt.Sprintf("%s://127.0.0.1:%d", tc.scheme, serverPort(t, srv))
			}
			o := testOptions(t, url)
			tc.good(&o)
			s, err := NewNATSSink(context.Background(), o, nil)
			if err != nil {
				t.Fatalf("good credentials refused: %v", err)
			}
			recs := testRecords(tc.name, 0, 20)
			publishAll(t, s, recs)
			closeSink(t, s)
			if st := s.Stats(); st.Acked != 20 {
				t.Fatalf("stats %+v", st)
			}

			o = testOptions(t, url)
			tc.bad(&o)
			s, err = NewNATSSink(context.Background(), o, nil)
			if err == nil {
				s.Close(context.Background())
				t.Fatal("bad credentials accepted")
			}
			if !strings.Contains(strings.ToLower(err.Error()), tc.badWant) {
				t.Fatalf("error %q does not mention %q", err, tc.badWant)
			}
		})
	}
}

func TestNATSOptionsErrors(t *testing.T) {
	cases := []struct {
		name string
		mod  func(*NATSOptions)
		want string
	}{
		{"no-url", func(o *NATSOptions) { o.URLs = nil }, "no server URL"},
		{"bad-scheme", func(o *NATSOptions) { o.URLs = []string{"http://127.0.0.1:4222"} }, "scheme"},
		{"bad-port", func(o *NATSOptions) { o.URLs = []string{"nats://127.0.0.1:99999"} }, "port"},
		{"unparsable", func(o *NATSOptions) { o.URLs = []string{"nats://[::1"} }, "server URL"},
		{"replicas", func(o *NATSOptions) { o.Replicas = 7 }, "replicas"},
		{"two-auth", func(o *NATSOptions) { o.User, o.Token = "u", "t" }, "only one"},
		{"missing-creds", func(o *NATSOptions) { o.CredsFile = "/nonexistent/x.creds" }, "creds file"},
		{"half-tls", func(o *NATSOptions) { o.TLSCert = "/etc/hostname" }, "go together"},
		{"wildcard-prefix", func(o *NATSOptions) { o.SubjectPrefix = "a.*" }, "wildcard"},
		{"jetstream-mode", func(o *NATSOptions) { o.JetStream = "maybe" }, "auto, on or off"},
		{"stream-name", func(o *NATSOptions) { o.Stream = "A.B" }, "stream name"},
		{"dup-window", func(o *NATSOptions) { o.MaxAge, o.DuplicateWindow = time.Hour, 2*time.Hour }, "duplicate window"},
		{"setup", func(o *NATSOptions) { o.SetupErr = errors.New("TSCHSENSOR_NATS_MAX_AGE: bad") }, "MAX_AGE"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := testOptions(t, "nats://127.0.0.1:4222")
			tc.mod(&o)
			s, err := NewNATSSink(context.Background(), o, nil)
			if err == nil {
				s.Close(context.Background())
				t.Fatal("accepted")
			}
			if !strings.Contains(strings.ToLower(err.Error()), strings.ToLower(tc.want)) {
				t.Fatalf("error %q does not mention %q", err, tc.want)
			}
		})
	}
}

// TestNATSSinkCoreNATS publishes to a server without JetStream: auto mode
// falls back to plain publishes, "on" refuses to start.
func TestNATSSinkCoreNATS(t *testing.T) {
	srv := testServer(t, &server.Options{}, "")
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	got := make(chan *nats.Msg, 1000)
	sub, err := nc.ChanSubscribe("tschsensor.>", got)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}

	o := testOptions(t, srv.ClientURL())
	s, err := NewNATSSink(context.Background(), o, nil)
	if err != nil {
		t.Fatal(err)
	}
	recs := testRecords("core", 0, 500)
	publishAll(t, s, recs)
	closeSink(t, s)
	if st := s.Stats(); st.Acked != 500 {
		t.Fatalf("stats %+v", st)
	}
	for i, r := range recs {
		m := <-got
		if m.Subject != "tschsensor."+r.Subject || m.Header.Get(HeaderMsgID) != r.ID || !bytes.Equal(m.Data, r.JSON) ||
			m.Header.Get(HeaderSensor) != "sensor-test" {
			t.Fatalf("message %d: %s %v", i, m.Subject, m.Header)
		}
	}

	o = testOptions(t, srv.ClientURL())
	o.JetStream = "on"
	if s, err := NewNATSSink(context.Background(), o, nil); err == nil {
		s.Close(context.Background())
		t.Fatal("jetstream on accepted a server without JetStream")
	}

	// The server goes away before Close could confirm what was sent:
	// every record is accounted for, the unconfirmed ones as dropped.
	o = testOptions(t, srv.ClientURL())
	s, err = NewNATSSink(context.Background(), o, nil)
	if err != nil {
		t.Fatal(err)
	}
	publishAll(t, s, recs[:100])
	srv.Shutdown()
	srv.WaitForShutdown()
	err = s.Close(context.Background())
	st := s.Stats()
	if st.Acked+st.DroppedAtClose+uint64(st.SpoolRecords) != 100 || (st.DroppedAtClose > 0) != (err != nil) {
		t.Fatalf("after the server left: %+v, close error %v", st, err)
	}
	if d := s.Delivery(); d.DroppedAtClose != st.DroppedAtClose {
		t.Fatalf("Delivery %+v", d)
	}
	t.Logf("acked %d, dropped at close %d, left in spool %d", st.Acked, st.DroppedAtClose, st.SpoolRecords)
}

// TestNATSSinkStreamChecks covers reusing a stream that is there, one that
// does not capture our subjects, and a missing one with creation off.
func TestNATSSinkStreamChecks(t *testing.T) {
	srv := testServer(t, &server.Options{}, t.TempDir())
	js, done := jetStreamClient(t, srv.ClientURL())
	defer done()
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "OTHER", Subjects: []string{"other.>"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "ALL", Subjects: []string{"tschsensor.>"}, Duplicates: time.Hour}); err != nil {
		t.Fatal(err)
	}

	o := testOptions(t, srv.ClientURL())
	o.Stream = "OTHER"
	if _, err := NewNATSSink(ctx, o, nil); err == nil || !strings.Contains(err.Error(), "do not capture") {
		t.Fatalf("stream with other subjects: %v", err)
	}
	o = testOptions(t, srv.ClientURL())
	o.Stream, o.CreateStream = "MISSING", false
	if _, err := NewNATSSink(ctx, o, nil); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("missing stream with creation off: %v", err)
	}
	// A per-site prefix under a shared stream.
	o = testOptions(t, srv.ClientURL())
	o.Stream, o.SubjectPrefix, o.CreateStream = "ALL", "tschsensor.site1", false
	s, err := NewNATSSink(ctx, o, nil)
	if err != nil {
		t.Fatal(err)
	}
	recs := testRecords("site", 0, 30)
	publishAll(t, s, recs)
	closeSink(t, s)
	checkExactly(t, readStream(t, srv.ClientURL(), "ALL"), recs, "tschsensor.site1")
}

// TestNATSSinkEmbedded runs the in-process server, reads the stream with
// Tail while the sink is open, and finds the data again in the store after
// the sink (and its server) closed.
func TestNATSSinkEmbedded(t *testing.T) {
	store := t.TempDir()
	o := testOptions(t)
	// Port 0: the server binds a free port itself and says which.
	o.Embedded, o.EmbeddedAddr, o.EmbeddedDir = true, "127.0.0.1:0", store
	s, err := NewNATSSink(context.Background(), o, nil)
	if err != nil {
		t.Fatal(err)
	}
	addr := s.EmbeddedAddr()
	if addr == "" || strings.HasSuffix(addr, ":0") || strings.HasSuffix(addr, ":4222") {
		t.Fatalf("embedded server on %q, want a port of its own choice", addr)
	}
	recs := testRecords("embedded", 0, 200)
	publishAll(t, s, recs)

	var out bytes.Buffer
	to := DefaultNATSOptions()
	to.Embedded, to.EmbeddedAddr = true, addr
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := Tail(ctx, to, TailOptions{All: true, Subject: "alert.>", Count: 20}, &out, nil); err != nil {
		t.Fatal(err)
	}
	var want bytes.Buffer
	for _, r := range recs {
		if r.Kind == "alert" {
			want.Write(r.JSON)
			want.WriteByte('\n')
		}
	}
	if out.String() != want.String() {
		t.Fatalf("tail printed\n%s\nwant\n%s", out.String(), want.String())
	}
	closeSink(t, s)
	if _, err := net.Dial("tcp", addr); err == nil {
		t.Fatal("embedded server still listening after Close")
	}

	srv := testServer(t, &server.Options{}, store)
	checkExactly(t, readStream(t, srv.ClientURL(), DefaultStream), recs, DefaultSubjectPrefix)
}

func TestTailSinceAndCore(t *testing.T) {
	srv := testServer(t, &server.Options{}, t.TempDir())
	o := testOptions(t, srv.ClientURL())
	s, err := NewNATSSink(context.Background(), o, nil)
	if err != nil {
		t.Fatal(err)
	}
	recs := testRecords("since", 0, 50)
	publishAll(t, s, recs)
	closeSink(t, s)

	to := DefaultNATSOptions()
	to.URLs = []string{srv.ClientURL()}
	since, all, err := ParseSince("1h", time.Now())
	if err != nil || all {
		t.Fatal(err)
	}
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := Tail(ctx, to, TailOptions{Since: since, Count: 50}, &out, nil); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != 50 || lines[49] != string(recs[49].JSON) {
		t.Fatalf("tail --since 1h printed %d lines, last %q", len(lines), lines[len(lines)-1])
	}
	// Since the future: nothing old; with core NATS --since is refused.
	to.JetStream = "off"
	if err := Tail(ctx, to, TailOptions{Since: since}, &out, nil); err == nil || !strings.Contains(err.Error(), "--since") {
		t.Fatalf("core tail with since: %v", err)
	}
	for _, bad := range []string{"yesterday", "-5m"} {
		if _, _, err := ParseSince(bad, time.Now()); err == nil {
			t.Fatalf("ParseSince(%q) accepted", bad)
		}
	}
}

// buildNATSServer builds the nats-server command from the module cache.
// Where it should work (CI=true) a failure fails the test.
func buildNATSServer(t testing.TB) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds nats-server; skipped with -short")
	}
	bin := filepath.Join(t.TempDir(), "nats-server")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/nats-io/nats-server/v2")
	if out, err := cmd.CombinedOutput(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("cannot build nats-server (%v): %s", err, out)
		}
		t.Skipf("cannot build nats-server (%v): %s", err, out)
	}
	return bin
}

type serverProc struct {
	cmd  *exec.Cmd
	out  syncbuf.Buffer
	name string
	// url is the client URL the server bound (read back from its ports
	// file), cluster its route URL when clustered.
	url, cluster string
}

// startServerConf runs nats-server with a configuration file. The server
// binds the ports the file names (-1: its own choice) and writes them to a
// ports file, read back here: no port is picked free beforehand.
func startServerConf(t testing.TB, bin, name, conf string) *serverProc {
	t.Helper()
	dir := t.TempDir()
	cf := filepath.Join(dir, "server.conf")
	conf = fmt.Sprintf("server_name: %q\nports_file_dir: %q\n", name, dir) + conf
	if err := os.WriteFile(cf, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	p := &serverProc{name: name}
	p.cmd = exec.Command(bin, "-c", cf)
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.kill() })
	portsFile := filepath.Join(dir, fmt.Sprintf("nats-server_%d.ports", p.cmd.Process.Pid))
	deadline := time.Now().Add(30 * time.Second)
	for {
		if b, err := os.ReadFile(portsFile); err == nil {
			var ports struct{ Nats, Cluster []string }
			if json.Unmarshal(b, &ports) == nil && len(ports.Nats) > 0 {
				p.url = ports.Nats[0]
				if len(ports.Cluster) > 0 {
					p.cluster = ports.Cluster[0]
				}
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("nats-server %s wrote no ports file:\n%s", name, p.out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Wait until it accepts connections (bounded: the test fails, it does
	// not time anything).
	for {
		nc, err := nats.Connect(p.url, nats.Timeout(time.Second))
		if err == nil {
			nc.Close()
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("nats-server %s did not come up: %v\n%s", name, err, p.out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// startServerProc runs a single JetStream server on port (-1: its choice).
func startServerProc(t *testing.T, bin string, port int, store string) *serverProc {
	t.Helper()
	return startServerConf(t, bin, "single", fmt.Sprintf("listen: \"127.0.0.1:%d\"\njetstream { store_dir: %q }\n", port, store))
}

func (p *serverProc) kill() {
	if p.cmd.ProcessState == nil {
		p.cmd.Process.Kill()
		p.cmd.Wait()
	}
}

// TestNATSSinkServerProcess publishes to a real nats-server process, kills
// it with SIGKILL mid-run and starts it again on the same store.
func TestNATSSinkServerProcess(t *testing.T) {
	bin := buildNATSServer(t)
	store := t.TempDir()
	p := startServerProc(t, bin, -1, store)
	url := p.url
	port, err := strconv.Atoi(url[strings.LastIndexByte(url, ':')+1:])
	if err != nil {
		t.Fatal(err)
	}

	recs := testRecords("process", 0, 3000)
	o := testOptions(t, url)
	o.AckTimeout = time.Minute
	s, err := NewNATSSink(context.Background(), o, nil)
	if err != nil {
		t.Fatal(err)
	}
	publishAll(t, s, recs[:1500])
	p.kill()
	publishAll(t, s, recs[1500:2000])
	startServerProc(t, bin, port, store)
	publishAll(t, s, recs[2000:])
	closeSink(t, s)
	if st := s.Stats(); st.Dropped != 0 || st.SpoolRecords != 0 {
		t.Fatalf("stats %+v", st)
	}
	checkDelivered(t, readStream(t, url, DefaultStream), recs, DefaultSubjectPrefix)
}

// BenchmarkNATSPublish measures events per second into a local JetStream
// stream on file storage, every one acknowledged before the run ends.
func BenchmarkNATSPublish(b *testing.B) {
	srv := testServer(b, &server.Options{}, b.TempDir())
	o := testOptions(b, srv.ClientURL())
	o.DuplicateWindow = 2 * time.Minute
	o.AckTimeout = 5 * time.Minute
	s, err := NewNATSSink(context.Background(), o, nil)
	if err != nil {
		b.Fatal(err)
	}
	tmpl := testRecords("bench", 0, 1)[0]
	b.ReportAllocs()
	benchPublish(b, s, tmpl, "events/s")
}

// benchPublish publishes b.N copies of tmpl, each with its own id, closes
// the sink and reports the rate in unit. The clock runs until Close has
// every acknowledgement, since an unacknowledged record is not delivered.
func benchPublish(b *testing.B, s *NATSSink, tmpl Record, unit string) {
	b.Helper()
	ids := make([]string, b.N)
	for i := range ids {
		ids[i] = fmt.Sprintf("bench-%09d", i)
	}
	b.SetBytes(int64(len(tmpl.JSON)))
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		r := tmpl
		r.ID = ids[i]
		if err := s.Publish(r); err != nil {
			b.Fatal(err)
		}
	}
	if err := s.Close(context.Background()); err != nil {
		b.Fatal(err)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	if st := s.Stats(); st.Acked != uint64(b.N) {
		b.Fatalf("acked %d of %d (%+v)", st.Acked, b.N, st)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), unit)
}
