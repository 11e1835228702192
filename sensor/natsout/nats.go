package natsout

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tschsensor/tschsensor/sensor/output"
)

// Defaults of NATSOptions; DefaultNATSOptions returns them.
const (
	DefaultSubjectPrefix = "tschsensor"
	DefaultStream        = "TSCHSENSOR"
	DefaultEmbeddedAddr  = "127.0.0.1:4222"
	// DefaultMaxAge keeps a week of events in the stream.
	DefaultMaxAge = 7 * 24 * time.Hour
	// DefaultDuplicateWindow is long so that replaying the same capture
	// again later the same day publishes nothing new: JetStream only
	// de-duplicates Nats-Msg-Id values seen within the window. The server
	// keeps one entry per message id in the window, which is cheap at the
	// rate this sensor produces events (metrics carry no id).
	DefaultDuplicateWindow = 24 * time.Hour
	// DefaultMaxInFlight bounds unacknowledged asynchronous publishes; it
	// is the batch that keeps the link busy while acks come back.
	DefaultMaxInFlight = 4096
	// DefaultSpoolMaxBytes bounds the on-disk spool.
	DefaultSpoolMaxBytes = 256 << 20
	// DefaultAckTimeout is how long Close waits for acknowledgements and
	// for the spool to drain before keeping the rest on disk.
	DefaultAckTimeout = 10 * time.Second
)

// Limits and timings that are not options.
const (
	// natsPubAckWait: an ack slower than this counts as failed and the
	// record goes to the spool (JetStream drops the re-send if the late
	// ack meant it was stored after all).
	natsPubAckWait = 5 * time.Second
	// natsStallWait is the longest Publish waits for an in-flight slot
	// before it spools the record instead.
	natsStallWait = 2 * time.Second
	// natsConnectTimeout bounds each dial at start-up.
	natsConnectTimeout = 5 * time.Second
	// natsReconnectWait is the pause between reconnect attempts.
	natsReconnectWait = time.Second
	// natsPingInterval × natsMaxPingsOut is how long a silently dead
	// server (no RST) goes unnoticed.
	natsPingInterval = 5 * time.Second
	natsMaxPingsOut  = 3
	// natsResendMaxBytes caps the payload bytes of one re-send batch.
	natsResendMaxBytes = 8 << 20
	// natsWarnEvery rate-limits repeated warnings (drops, spooling).
	natsWarnEvery = 10 * time.Second
	// natsMaxInFlightLimit caps MaxInFlight.
	natsMaxInFlightLimit = 1 << 20
	// natsMaxSensorID caps the sensor id header.
	natsMaxSensorID = 256
)

// Headers set on every message.
const (
	// HeaderSensor carries the sensor id, so consumers can tell sensors
	// apart without a subject token per sensor.
	HeaderSensor = "Tschsensor-Sensor"
	// HeaderKind carries Record.Kind: event, alert or metric.
	HeaderKind = "Tschsensor-Kind"
	// HeaderMsgID is JetStream's de-duplication header; it carries
	// Record.ID and is absent when the ID is empty (metrics).
	HeaderMsgID = jetstream.MsgIDHeader
)

// ErrSinkClosed is returned by Publish after Close.
var ErrSinkClosed = errors.New("nats sink closed")

// NATSOptions configures NewNATSSink (and Tail). Zero fields take the
// defaults above when Validate runs, except CreateStream, whose zero value
// is false: start from DefaultNATSOptions to get true.
type NATSOptions struct {
	// URLs of the servers (nats://, tls://, ws://, wss:// or host:port).
	// Ignored when Embedded.
	URLs []string
	// Authentication: at most one of CredsFile, NKeySeedFile, User (with
	// Password) and Token.
	CredsFile, NKeySeedFile, User, Password, Token string
	// TLS: TLSCA verifies the server; TLSCert and TLSKey (both or neither)
	// are the client certificate.
	TLSCA, TLSCert, TLSKey string
	// SubjectPrefix goes before every Record.Subject ("tschsensor").
	SubjectPrefix string
	// SensorID goes in the Tschsensor-Sensor header (default: hostname).
	SensorID string
	// JetStream: "auto" (use it if the server offers it), "on" (fail
	// without it) or "off" (core NATS publish, at most once).
	JetStream string
	// Stream is the JetStream stream name; CreateStream creates it (with
	// subjects "<prefix>.>") when missing, MaxAge and DuplicateWindow
	// configure a created stream.
	Stream          string
	CreateStream    bool
	MaxAge          time.Duration
	DuplicateWindow time.Duration
	// Replicas of a created stream (1, or 3 on a cluster).
	Replicas int
	// MaxInFlight bounds unacknowledged publishes.
	MaxInFlight int
	// SpoolDir keeps records not yet acknowledged; SpoolMaxBytes bounds it.
	SpoolDir      string
	SpoolMaxBytes int64
	// AckTimeout is how long Close waits for acknowledgements.
	AckTimeout time.Duration
	// Embedded runs a nats-server with JetStream inside the process,
	// listening on EmbeddedAddr and storing in EmbeddedDir.
	Embedded     bool
	EmbeddedAddr string
	EmbeddedDir  string
	// SetupErr is the first error met while filling these options from
	// flags or environment variables; Validate returns it.
	SetupErr error
}

// DefaultNATSOptions returns the options with every default filled in,
// except URLs, SensorID and the directories, which Validate derives.
func DefaultNATSOptions() NATSOptions {
	return NATSOptions{
		SubjectPrefix:   DefaultSubjectPrefix,
		JetStream:       "auto",
		Stream:          DefaultStream,
		CreateStream:    true,
		MaxAge:          DefaultMaxAge,
		DuplicateWindow: DefaultDuplicateWindow,
		MaxInFlight:     DefaultMaxInFlight,
		Replicas:        1,
		SpoolMaxBytes:   DefaultSpoolMaxBytes,
		AckTimeout:      DefaultAckTimeout,
		EmbeddedAddr:    DefaultEmbeddedAddr,
	}
}

// Validate fills zero fields with their defaults and checks the options.
func (o *NATSOptions) Validate() error {
	if o.SetupErr != nil {
		return o.SetupErr
	}
	d := DefaultNATSOptions()
	if o.SubjectPrefix == "" {
		o.SubjectPrefix = d.SubjectPrefix
	}
	if o.JetStream == "" {
		o.JetStream = d.JetStream
	}
	if o.Stream == "" {
		o.Stream = d.Stream
	}
	if o.MaxAge == 0 {
		o.MaxAge = d.MaxAge
	}
	if o.DuplicateWindow == 0 {
		o.DuplicateWindow = min(d.DuplicateWindow, o.MaxAge)
	}
	if o.MaxInFlight == 0 {
		o.MaxInFlight = d.MaxInFlight
	}
	if o.Replicas == 0 {
		o.Replicas = d.Replicas
	}
	if o.SpoolMaxBytes == 0 {
		o.SpoolMaxBytes = d.SpoolMaxBytes
	}
	if o.AckTimeout == 0 {
		o.AckTimeout = d.AckTimeout
	}
	if o.EmbeddedAddr == "" {
		o.EmbeddedAddr = d.EmbeddedAddr
	}
	if o.SensorID == "" {
		h, err := os.Hostname()
		if err != nil || h == "" {
			h = "unknown"
		}
		o.SensorID = h
	}

	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf("nats options: "+format, args...)) }
	if o.Embedded {
		if _, _, err := splitHostPort(o.EmbeddedAddr); err != nil {
			bad("embedded address %q: %v", o.EmbeddedAddr, err)
		}
	} else if len(o.URLs) == 0 {
		bad("no server URL (use --nats URL or --nats embedded)")
	}
	for _, u := range o.URLs {
		if err := checkNATSURL(u); err != nil {
			bad("%v", err)
		}
	}
	auth := 0
	for _, s := range []string{o.CredsFile, o.NKeySeedFile, o.User, o.Token} {
		if s != "" {
			auth++
		}
	}
	if auth > 1 {
		bad("give only one of creds file, nkey seed file, user/password and token")
	}
	if o.Password != "" && o.User == "" {
		bad("password without user")
	}
	if (o.TLSCert == "") != (o.TLSKey == "") {
		bad("TLS client certificate and key go together")
	}
	for _, f := range []struct{ what, path string }{
		{"creds file", o.CredsFile}, {"nkey seed file", o.NKeySeedFile},
		{"TLS CA", o.TLSCA}, {"TLS certificate", o.TLSCert}, {"TLS key", o.TLSKey},
	} {
		if f.path == "" {
			continue
		}
		if _, err := os.Stat(f.path); err != nil {
			bad("%s: %v", f.what, err)
		}
	}
	if err := checkSubject(o.SubjectPrefix); err != nil {
		bad("subject prefix %q: %v", o.SubjectPrefix, err)
	}
	if len(o.SensorID) > natsMaxSensorID || strings.ContainsAny(o.SensorID, "\r\n\x00") {
		bad("sensor id must be at most %d bytes on one line", natsMaxSensorID)
	}
	switch o.JetStream {
	case "auto", "on", "off":
	default:
		bad("jetstream must be auto, on or off, not %q", o.JetStream)
	}
	if o.Stream == "" || strings.ContainsAny(o.Stream, ".*> \t\r\n/\\") {
		bad("stream name %q must be non-empty without . * > / \\ or spaces", o.Stream)
	}
	if o.MaxAge < 0 || o.DuplicateWindow < 0 || o.AckTimeout < 0 {
		bad("durations must not be negative")
	}
	if o.DuplicateWindow > o.MaxAge {
		bad("duplicate window %v longer than max age %v", o.DuplicateWindow, o.MaxAge)
	}
	if o.Replicas < 1 || o.Replicas > 5 {
		bad("stream replicas %d out of 1..5", o.Replicas)
	}
	if o.MaxInFlight < 0 || o.MaxInFlight > natsMaxInFlightLimit {
		bad("max in-flight %d out of 1..%d", o.MaxInFlight, natsMaxInFlightLimit)
	}
	if o.SpoolMaxBytes < spoolMinSegment {
		bad("spool max bytes %d below %d", o.SpoolMaxBytes, spoolMinSegment)
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	if o.SpoolDir == "" {
		o.SpoolDir = filepath.Join(cacheDir(), "spool", sanitizeName(o.SensorID+"-"+o.Stream))
	}
	if o.Embedded && o.EmbeddedDir == "" {
		o.EmbeddedDir = filepath.Join(cacheDir(), "nats")
	}
	return nil
}

// cacheDir is where the spool and the embedded server store live unless
// told otherwise.
func cacheDir() string {
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "tschsensor")
	}
	return filepath.Join(os.TempDir(), "tschsensor")
}

func sanitizeName(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.' {
			return r
		}
		return '_'
	}, s)
}

func splitHostPort(addr string) (string, int, error) {
	host, ps, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(ps)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("bad port %q", ps)
	}
	return host, port, nil
}

func checkNATSURL(raw string) error {
	s := raw
	if !strings.Contains(s, "://") {
		s = "nats://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("server URL: %w", err)
	}
	switch u.Scheme {
	case "nats", "tls", "ws", "wss":
	default:
		return fmt.Errorf("server URL %s: scheme must be nats, tls, ws or wss", u.Redacted())
	}
	if u.Hostname() == "" {
		return fmt.Errorf("server URL %s: no host", u.Redacted())
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("server URL %s: bad port", u.Redacted())
		}
	}
	return nil
}

// checkSubject accepts a literal subject: dot-separated non-empty tokens
// without wildcards or white space.
func checkSubject(s string) error {
	if s == "" {
		return errors.New("empty subject")
	}
	tokStart := 0
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == '.' {
			if i == tokStart {
				return errors.New("empty token")
			}
			tok := s[tokStart:i]
			if tok == "*" || tok == ">" {
				return errors.New("wildcard token")
			}
			tokStart = i + 1
			continue
		}
		switch c := s[i]; {
		case c <= ' ', c == 0x7f:
			return errors.New("white space or control character")
		}
	}
	return nil
}

// subjectCovers reports whether every subject matching sub also matches
// filter (both may hold wildcards).
func subjectCovers(filter, sub string) bool {
	ft, st := strings.Split(filter, "."), strings.Split(sub, ".")
	for i, f := range ft {
		if f == ">" {
			return i < len(st)
		}
		if i >= len(st) {
			return false
		}
		switch {
		case st[i] == ">":
			return false
		case f == "*":
		case f != st[i]:
			return false
		}
	}
	return len(ft) == len(st)
}

func redactedURLs(urls []string) string {
	out := make([]string, len(urls))
	for i, raw := range urls {
		if u, err := url.Parse(raw); err == nil && u.User != nil {
			out[i] = u.Redacted()
		} else {
			out[i] = raw
		}
	}
	return strings.Join(out, ",")
}

// Connect dials the servers of validated options; name names the client
// connection on the server. It reconnects for ever after a successful
// start but fails at once on a bad URL, bad credentials or TLS trouble.
func (o *NATSOptions) Connect(name string, log *slog.Logger, extra ...nats.Option) (*nats.Conn, error) {
	return o.connect(name, log, false, extra...)
}

// connect is Connect; with retry, a server that does not answer at all
// (nothing listening, no route) is not an error: the connection comes back
// still reconnecting, and keeps trying in the background.
func (o *NATSOptions) connect(name string, log *slog.Logger, retry bool, extra ...nats.Option) (*nats.Conn, error) {
	opts, err := o.natsOptions(name, log)
	if err != nil {
		return nil, err
	}
	opts = append(opts, extra...)
	nc, err := nats.Connect(strings.Join(o.URLs, ","), opts...)
	if err != nil && retry && unreachable(err) {
		nc, err = nats.Connect(strings.Join(o.URLs, ","), append(opts, nats.RetryOnFailedConnect(true))...)
	}
	if err != nil {
		return nil, connectError(redactedURLs(o.URLs), err)
	}
	return nc, nil
}

// unreachable tells a server that is down or unroutable from one that
// answered and refused us (credentials, TLS, protocol): only the first is
// worth waiting for.
func unreachable(err error) bool {
	var ne net.Error
	return errors.Is(err, nats.ErrNoServers) || errors.Is(err, nats.ErrTimeout) || errors.As(err, &ne)
}

func connectError(where string, err error) error {
	hint := ""
	switch {
	case errors.Is(err, nats.ErrAuthorization), strings.Contains(strings.ToLower(err.Error()), "authorization"),
		strings.Contains(strings.ToLower(err.Error()), "authentication"):
		hint = " (check --nats-user/--nats-password, --nats-token, --nats-nkey or --nats-creds)"
	case strings.Contains(err.Error(), "x509"), strings.Contains(err.Error(), "tls"):
		hint = " (check --nats-tls-ca, --nats-tls-cert and --nats-tls-key)"
	case errors.Is(err, nats.ErrNoServers):
		hint = " (is a nats-server listening there?)"
	}
	return fmt.Errorf("nats: connect to %s: %w%s", where, err, hint)
}

func (o *NATSOptions) natsOptions(name string, log *slog.Logger) ([]nats.Option, error) {
	opts := []nats.Option{
		nats.Name(name),
		nats.Timeout(natsConnectTimeout),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(natsReconnectWait),
		// No client-side buffer while disconnected: a publish then fails at
		// once and the record goes to our spool, which is bounded, on disk
		// and ordered.
		nats.ReconnectBufSize(-1),
		nats.FlusherTimeout(natsPubAckWait),
		nats.PingInterval(natsPingInterval),
		nats.MaxPingsOutstanding(natsMaxPingsOut),
	}
	switch {
	case o.CredsFile != "":
		opts = append(opts, nats.UserCredentials(o.CredsFile))
	case o.NKeySeedFile != "":
		opt, err := nats.NkeyOptionFromSeed(o.NKeySeedFile)
		if err != nil {
			return nil, fmt.Errorf("nats: nkey seed %s: %w", o.NKeySeedFile, err)
		}
		opts = append(opts, opt)
	case o.User != "":
		opts = append(opts, nats.UserInfo(o.User, o.Password))
	case o.Token != "":
		opts = append(opts, nats.Token(o.Token))
	}
	if o.TLSCA != "" {
		opts = append(opts, nats.RootCAs(o.TLSCA))
	}
	if o.TLSCert != "" {
		opts = append(opts, nats.ClientCert(o.TLSCert, o.TLSKey))
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	// Without a handler nats.go prints asynchronous errors to stderr.
	opts = append(opts, nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
		if sub != nil {
			log.Warn("nats: subscription error", "subject", sub.Subject, "err", err)
			return
		}
		log.Warn("nats: connection error", "err", err)
	}))
	{
		opts = append(opts,
			nats.DisconnectErrHandler(func(nc *nats.Conn, err error) {
				if nc.IsClosed() {
					return // our own Close
				}
				if err != nil {
					log.Warn("nats: disconnected, reconnecting", "err", err)
				} else {
					log.Info("nats: disconnected, reconnecting")
				}
			}),
			nats.ReconnectHandler(func(nc *nats.Conn) {
				log.Info("nats: reconnected", "server", nc.ConnectedUrlRedacted())
			}),
		)
	}
	return opts, nil
}

// NATSStats counts what the sink did with the records it was given.
type NATSStats struct {
	Published uint64 // records given to Publish and accepted
	Acked     uint64 // records the server confirmed (JetStream ack, or a core NATS flush)
	Spooled   uint64 // records written to the spool
	Resent    uint64 // records re-sent from the spool and confirmed
	Dropped   uint64 // records lost: spool full or unwritable
	// DroppedAtClose: core NATS records not confirmed when Close gave up
	// (flush failed or not connected).
	DroppedAtClose uint64
	Errors         uint64 // failed publishes, acks and re-send batches
	// InFlight, SpoolRecords and SpoolBytes are current levels.
	InFlight     int
	SpoolRecords int64
	SpoolBytes   int64
}

// NATSSink publishes records to NATS, through JetStream with
// acknowledgements when the server has it. Records that cannot be
// delivered go to an on-disk spool and are re-sent, in order, when the
// server is back. It implements Sink.
type NATSSink struct {
	o      NATSOptions
	log    *slog.Logger
	nc     *nats.Conn
	js     jetstream.JetStream // live publishes; nil in core mode
	jsr    jetstream.JetStream // re-sends from the spool
	srv    *server.Server      // embedded server, if any
	sp     *spool
	sensor []string // shared header value
	// pubOpts go with every JetStream publish: see jsPublishOpts.
	pubOpts []jetstream.PublishOpt

	// mu serialises Publish, Close and mode switches. It is never held
	// by the publish callbacks, which run under nats.go's own locks.
	mu       sync.Mutex
	spooling bool // new records go to the spool until it drains
	closed   bool

	// fmu guards the in-flight queue, which the ack callbacks touch.
	fmu     sync.Mutex
	flights []*flight
	fhead   int
	fbyMsg  map[*nats.Msg]*flight
	failed  atomic.Bool // an in-flight publish failed: switch to the spool
	space   chan struct{}
	kick    chan struct{}
	unsent  atomic.Uint64 // core mode: published, not yet flushed
	stop    context.CancelFunc
	done    chan struct{}
	warnMu  sync.Mutex
	warnAt  map[string]time.Time
	stats   struct{ published, acked, spooled, resent, dropped, droppedClose, errors atomic.Uint64 }
	lastErr atomic.Value
	// needSetup: the stream must be looked up (and created if allowed)
	// before records go out: at a start without the server, after a
	// reconnect (the server may have a new, empty store), and when the
	// stream stopped answering. Records are spooled meanwhile.
	needSetup atomic.Bool
}

type flight struct {
	msg   *nats.Msg
	sent  time.Time
	acked bool
}

// NewNATSSink validates o, starts the embedded server if asked, connects,
// checks or creates the stream and opens the spool. Errors name what is
// wrong: the URL, the credentials, TLS, or the stream.
func NewNATSSink(ctx context.Context, o NATSOptions, log *slog.Logger) (*NATSSink, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := o.Validate(); err != nil {
		return nil, err
	}
	s := &NATSSink{
		o:       o,
		log:     log,
		sensor:  []string{o.SensorID},
		pubOpts: jsPublishOpts(o.Stream),
		fbyMsg:  make(map[*nats.Msg]*flight),
		space:   make(chan struct{}, 1),
		kick:    make(chan struct{}, 1),
		done:    make(chan struct{}),
		warnAt:  make(map[string]time.Time),
	}
	ok := false
	defer func() {
		if !ok {
			s.teardown()
		}
	}()
	var extra []nats.Option
	if o.Embedded {
		srv, err := startEmbeddedNATS(o.EmbeddedAddr, o.EmbeddedDir, log)
		if err != nil {
			return nil, err
		}
		s.srv = srv
		s.o.URLs = []string{srv.ClientURL()}
		// The sink talks to its own server without a socket.
		extra = append(extra, nats.InProcessServer(srv))
	}
	// ConnectHandler: the first connection of a sink started while the
	// server was unreachable (the stream is looked up then anyway);
	// ReconnectHandler: every later one.
	extra = append(extra, nats.ConnectHandler(func(nc *nats.Conn) {
		if s.needSetup.Load() {
			log.Info("nats: connected", "server", nc.ConnectedUrlRedacted())
			s.poke()
		}
	}), nats.ReconnectHandler(func(nc *nats.Conn) {
		log.Info("nats: reconnected", "server", nc.ConnectedUrlRedacted())
		// The server may have come back without our stream (new store,
		// stream deleted): look again before publishing.
		s.needSetup.Store(true)
		s.poke()
	}))
	nc, err := s.o.connect("tschsensor "+o.SensorID, log, !o.Embedded, extra...)
	if err != nil {
		return nil, err
	}
	s.nc = nc
	sp, err := openSpool(o.SpoolDir, o.SpoolMaxBytes, log)
	if err != nil {
		return nil, fmt.Errorf("nats: %w", err)
	}
	s.sp = sp
	if nc.IsConnected() {
		// Configuration errors (stream subjects, creation off) show at
		// start while the server can tell.
		js, jsr, err := s.setupJetStream(ctx)
		if err != nil {
			return nil, err
		}
		s.js, s.jsr = js, jsr
	} else {
		log.Warn("nats: server unreachable, spooling records and reconnecting in the background",
			"servers", redactedURLs(o.URLs), "spool", o.SpoolDir)
		s.needSetup.Store(true)
		s.spooling = true
	}
	if recs, bytes := sp.Len(); recs > 0 {
		log.Info("nats: re-sending records spooled by an earlier run", "records", recs, "bytes", bytes, "spool", o.SpoolDir)
		s.spooling = true
	}
	rctx, cancel := context.WithCancel(context.Background())
	s.stop = cancel
	go s.resender(rctx)
	s.poke()
	if nc.IsConnected() {
		mode := "jetstream"
		if s.js == nil {
			mode = "core"
		}
		log.Info("nats: connected", "server", nc.ConnectedUrlRedacted(), "mode", mode, "stream", o.Stream,
			"subjects", o.SubjectPrefix+".>", "sensor", o.SensorID, "spool", o.SpoolDir)
	}
	ok = true
	return s, nil
}

// setupJetStream decides between JetStream and core NATS and makes sure
// the stream exists and captures our subjects. It returns the JetStream
// contexts for live publishes and for re-sends, both nil for core NATS.
func (s *NATSSink) setupJetStream(ctx context.Context) (js, jsr jetstream.JetStream, err error) {
	if s.o.JetStream == "off" {
		return nil, nil, nil
	}
	// No per-publish ack timeout here: nats.go would arm a timer per
	// message. The resender checks the oldest in-flight record instead.
	js, err = jetstream.New(s.nc,
		jetstream.WithPublishAsyncAckHandler(s.onAck),
		jetstream.WithPublishAsyncErrHandler(s.onAckErr))
	if err != nil {
		return nil, nil, fmt.Errorf("nats: jetstream: %w", err)
	}
	jsr, err = jetstream.New(s.nc, jetstream.WithPublishAsyncTimeout(natsPubAckWait))
	if err != nil {
		return nil, nil, fmt.Errorf("nats: jetstream: %w", err)
	}
	actx, cancel := context.WithTimeout(ctx, natsConnectTimeout)
	defer cancel()
	if _, err := js.AccountInfo(actx); err != nil {
		if s.o.JetStream == "auto" && (errors.Is(err, jetstream.ErrJetStreamNotEnabled) ||
			errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount)) {
			s.log.Warn("nats: server has no JetStream, publishing with core NATS (at most once)")
			return nil, nil, nil
		}
		return nil, nil, fmt.Errorf("nats: jetstream not usable (use --nats-jetstream off for core NATS): %w", err)
	}
	want := s.o.SubjectPrefix + ".>"
	st, err := js.Stream(actx, s.o.Stream)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		if !s.o.CreateStream {
			return nil, nil, fmt.Errorf("nats: stream %s does not exist and stream creation is off", s.o.Stream)
		}
		_, err = js.CreateStream(actx, jetstream.StreamConfig{
			Name:        s.o.Stream,
			Description: "tschsensor events, alerts and metrics",
			Subjects:    []string{want},
			Storage:     jetstream.FileStorage,
			MaxAge:      s.o.MaxAge,
			Duplicates:  s.o.DuplicateWindow,
			Replicas:    s.o.Replicas,
		})
		if err != nil {
			return nil, nil, fmt.Errorf("nats: create stream %s: %w", s.o.Stream, err)
		}
		s.log.Info("nats: created stream", "stream", s.o.Stream, "subjects", want, "replicas", s.o.Replicas)
	case err != nil:
		return nil, nil, fmt.Errorf("nats: look up stream %s: %w", s.o.Stream, err)
	default:
		covered := false
		for _, f := range st.CachedInfo().Config.Subjects {
			if subjectCovers(f, want) {
				covered = true
				break
			}
		}
		if !covered {
			return nil, nil, fmt.Errorf("nats: stream %s exists but its subjects %v do not capture %s",
				s.o.Stream, st.CachedInfo().Config.Subjects, want)
		}
		if dw := st.CachedInfo().Config.Duplicates; dw < s.o.DuplicateWindow {
			s.log.Warn("nats: existing stream has a shorter duplicate window than asked; re-sends after it may duplicate",
				"stream", s.o.Stream, "window", dw, "asked", s.o.DuplicateWindow)
		}
	}
	return js, jsr, nil
}

// jsPublishOpts are the options of every JetStream publish, live or
// re-sent from the spool.
//
// No retries: on a "no responders" reply nats.go would otherwise publish
// the message again by itself 250 ms later, twice, behind the sink's back.
// By then the sink may have moved the record to its spool and recreated
// the stream, and the library's copy landed in the new stream ahead of
// the records re-sent from the spool before it (seen in CI as a recreated
// stream starting in the middle of the outage; metrics, which carry no
// message id, were stored twice). The first failure must reach the sink
// at once: the spool is the only re-send path.
//
// Expected stream: only our stream may store the record. If the stream
// was replaced by another one capturing the same subjects, the server
// refuses the message instead of acknowledging it into a stream nobody
// reads from as ours.
func jsPublishOpts(stream string) []jetstream.PublishOpt {
	return []jetstream.PublishOpt{jetstream.WithRetryAttempts(0), jetstream.WithExpectStream(stream)}
}

// jsStreamNotMatch is the JetStream error code for a message whose
// Nats-Expected-Stream header names another stream than the one that
// captured it (JSStreamNotMatchErr; nats.go has no constant for it).
const jsStreamNotMatch jetstream.ErrorCode = 10060

// errWrongStream: a publish ack named another stream than ours.
var errWrongStream = errors.New("nats: publish stored in another stream")

// streamLost reports an error that means our stream is not there to
// answer: deleted, a server back with an empty store, or another stream
// now capturing our subjects.
func streamLost(err error) bool {
	var apiErr *jetstream.APIError
	return errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders) ||
		errors.Is(err, jetstream.ErrStreamNotFound) || errors.Is(err, errWrongStream) ||
		(errors.As(err, &apiErr) && apiErr.ErrorCode == jsStreamNotMatch)
}

// checkPubAck returns an error unless ack says our stream stored the
// record: a positive sequence in the configured stream. A duplicate ack
// is accepted: JetStream sends it only for a message id it stored within
// the duplicate window, and its sequence is that of the stored copy.
func (s *NATSSink) checkPubAck(ack *jetstream.PubAck) error {
	switch {
	case ack == nil:
		return errors.New("nats: empty publish ack")
	case ack.Stream != s.o.Stream:
		return fmt.Errorf("%w: acknowledged by stream %q, not %q", errWrongStream, ack.Stream, s.o.Stream)
	case ack.Sequence == 0:
		return fmt.Errorf("nats: publish ack from stream %s without a sequence", ack.Stream)
	}
	return nil
}

// setup looks the stream up again (creating it when allowed) from the
// resender, then lets records flow. Until it succeeds they are spooled.
func (s *NATSSink) setup(ctx context.Context) error {
	sctx, cancel := context.WithTimeout(ctx, natsConnectTimeout)
	defer cancel()
	js, jsr, err := s.setupJetStream(sctx)
	if err != nil {
		return err
	}
	s.mu.Lock()
	if !s.spooling {
		// Records published while the stream was being looked up went
		// out directly; from now on they go through the spool until it
		// drains, so nothing overtakes what is queued there. Those still
		// unacknowledged go to the spool first: while spooling nothing
		// moves in-flight records there any more, so one that failed
		// later would only be spooled after the spool drained, behind
		// records published after it. Their re-send is a duplicate
		// JetStream drops if they were stored after all. The spool is
		// empty whenever the sink is not spooling, so order holds.
		if s.Stats().InFlight > 0 {
			s.enterSpoolLocked("checking the stream")
		}
		s.spooling = true
	}
	if s.js != nil && js != nil {
		// Keep the live context: nats.go keeps its handlers per context.
		js = s.js
	}
	s.js, s.jsr = js, jsr
	s.mu.Unlock()
	s.needSetup.Store(false)
	return nil
}

// teardown releases whatever NewNATSSink got before failing.
func (s *NATSSink) teardown() {
	if s.nc != nil {
		s.nc.Close()
	}
	if s.sp != nil {
		s.sp.Close()
	}
	if s.srv != nil {
		s.srv.Shutdown()
		s.srv.WaitForShutdown()
	}
}

func (s *NATSSink) poke() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// warn logs msg at most once per natsWarnEvery for each key.
func (s *NATSSink) warn(key, msg string, args ...any) {
	if s.due(key) {
		s.log.Warn(msg, args...)
	}
}

// note is warn at info level, for progress worth seeing (re-sends).
func (s *NATSSink) note(key, msg string, args ...any) {
	if s.due(key) {
		s.log.Info(msg, args...)
	}
}

func (s *NATSSink) due(key string) bool {
	now := time.Now()
	s.warnMu.Lock()
	defer s.warnMu.Unlock()
	last, seen := s.warnAt[key]
	if seen && now.Sub(last) < natsWarnEvery {
		return false
	}
	s.warnAt[key] = now
	return true
}

func (s *NATSSink) newMsg(kind, subject, id string, data []byte) *nats.Msg {
	h := nats.Header{HeaderSensor: s.sensor}
	if kind != "" {
		h[HeaderKind] = []string{kind}
	}
	if id != "" {
		h[HeaderMsgID] = []string{id}
	}
	return &nats.Msg{Subject: subject, Header: h, Data: data}
}

// Publish sends rec, or spools it while the server is unreachable or slow.
// It waits at most natsStallWait for an in-flight slot and never longer.
// A record that cannot be spooled either is dropped, counted and warned
// about (rate-limited), and Publish still returns nil: the pipeline goes
// on. Errors are for records refused outright and for use after Close.
// Publish does not keep rec.JSON.
func (s *NATSSink) Publish(rec Record) error {
	if err := checkSubject(rec.Subject); err != nil {
		s.stats.errors.Add(1)
		return fmt.Errorf("nats: record subject %q: %w", rec.Subject, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrSinkClosed
	}
	s.stats.published.Add(1)
	msg := s.newMsg(rec.Kind, s.o.SubjectPrefix+"."+rec.Subject, rec.ID, append([]byte(nil), rec.JSON...))
	if !s.spooling && s.failed.Load() {
		s.enterSpoolLocked("an in-flight publish failed")
	}
	if !s.spooling && s.needSetup.Load() {
		s.enterSpoolLocked("checking the stream after a reconnect")
	}
	if s.spooling {
		s.spoolMsg(msg)
		return nil
	}
	if s.js == nil {
		if err := s.nc.PublishMsg(msg); err != nil {
			s.stats.errors.Add(1)
			s.enterSpoolLocked(err.Error())
			s.spoolMsg(msg)
			return nil
		}
		s.unsent.Add(1)
		return nil
	}
	if !s.waitSlot() {
		s.enterSpoolLocked("in-flight limit reached and no ack came")
		s.spoolMsg(msg)
		return nil
	}
	s.track(msg)
	if _, err := s.js.PublishMsgAsync(msg, s.pubOpts...); err != nil {
		s.stats.errors.Add(1)
		// msg is still tracked, so it is spooled in order with the rest.
		s.enterSpoolLocked(err.Error())
	}
	return nil
}

// waitSlot waits, bounded, until fewer than MaxInFlight publishes await
// an ack.
func (s *NATSSink) waitSlot() bool {
	var timer *time.Timer
	for {
		s.fmu.Lock()
		n := len(s.flights) - s.fhead
		s.fmu.Unlock()
		if n < s.o.MaxInFlight {
			if timer != nil {
				timer.Stop()
			}
			return true
		}
		if s.failed.Load() {
			return false
		}
		if timer == nil {
			timer = time.NewTimer(natsStallWait)
		}
		select {
		case <-s.space:
		case <-timer.C:
			return false
		}
	}
}

func (s *NATSSink) track(msg *nats.Msg) {
	f := &flight{msg: msg, sent: time.Now()}
	s.fmu.Lock()
	s.flights = append(s.flights, f)
	s.fbyMsg[msg] = f
	s.fmu.Unlock()
}

// onAck runs on nats.go's ack goroutine: it must not block. Only an ack
// from our stream counts; any other is a failed publish.
func (s *NATSSink) onAck(js jetstream.JetStream, msg *nats.Msg, ack *jetstream.PubAck) {
	if err := s.checkPubAck(ack); err != nil {
		s.onAckErr(js, msg, err)
		return
	}
	s.fmu.Lock()
	f, ok := s.fbyMsg[msg]
	if ok {
		f.acked = true
		delete(s.fbyMsg, msg)
		for s.fhead < len(s.flights) && s.flights[s.fhead].acked {
			s.flights[s.fhead] = nil
			s.fhead++
		}
		if s.fhead > 1024 && s.fhead*2 > len(s.flights) {
			n := copy(s.flights, s.flights[s.fhead:])
			clear(s.flights[n:])
			s.flights, s.fhead = s.flights[:n], 0
		}
	}
	s.fmu.Unlock()
	if ok {
		s.stats.acked.Add(1)
		select {
		case s.space <- struct{}{}:
		default:
		}
	}
}

// onAckErr may run with nats.go's publisher lock held: it only flags the
// failure; Publish or the resender then moves the records to the spool.
func (s *NATSSink) onAckErr(_ jetstream.JetStream, msg *nats.Msg, err error) {
	s.fmu.Lock()
	_, ok := s.fbyMsg[msg]
	s.fmu.Unlock()
	if !ok {
		return // already spooled
	}
	s.stats.errors.Add(1)
	s.lastErr.Store(err.Error())
	if streamLost(err) {
		s.needSetup.Store(true)
	}
	s.failed.Store(true)
	s.poke()
	select {
	case s.space <- struct{}{}:
	default:
	}
}

// enterSpoolLocked switches to spooling: every unacknowledged in-flight
// record goes to the spool first, in publish order, so the spool keeps the
// order of Publish calls. Acks that arrive later for them are ignored; the
// re-send is then a duplicate JetStream drops.
func (s *NATSSink) enterSpoolLocked(reason string) {
	s.fmu.Lock()
	var pending []*nats.Msg
	for _, f := range s.flights[s.fhead:] {
		if !f.acked {
			pending = append(pending, f.msg)
		}
	}
	clear(s.flights)
	s.flights, s.fhead = s.flights[:0], 0
	clear(s.fbyMsg)
	s.failed.Store(false)
	s.fmu.Unlock()
	if s.js != nil {
		// Forget nats.go's pending futures too (their error callbacks find
		// nothing to do): a late ack must not keep them for ever.
		s.js.CleanupPublisher()
	}
	s.spooling = true
	if e, ok := s.lastErr.Load().(string); ok && e != "" {
		reason += ": " + e
	}
	s.warn("spool", "nats: server unreachable or slow, spooling records", "reason", reason, "requeued", len(pending), "spool", s.o.SpoolDir)
	for _, m := range pending {
		s.spoolMsg(m)
	}
	s.poke()
}

func (s *NATSSink) spoolMsg(m *nats.Msg) {
	err := s.sp.Append(spoolRec{Kind: m.Header.Get(HeaderKind), Subject: m.Subject, ID: m.Header.Get(HeaderMsgID), Data: m.Data})
	if err == nil {
		s.stats.spooled.Add(1)
		return
	}
	n := s.stats.dropped.Add(1)
	if !errors.Is(err, errSpoolFull) {
		s.stats.errors.Add(1)
	}
	recs, bytes := s.sp.Len()
	s.warn("drop", "nats: dropping records, spool full or failing", "err", err, "dropped_total", n,
		"spool_records", recs, "spool_bytes", bytes, "spool_max_bytes", s.o.SpoolMaxBytes)
}

// resender runs until Close: it moves failed in-flight records to the
// spool, re-sends the spool in order when the server is reachable, flips
// back to direct publishing once it is empty, and syncs the spool.
func (s *NATSSink) resender(ctx context.Context) {
	defer close(s.done)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	backoff := time.Duration(0)
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.kick:
		case <-tick.C:
			if err := s.sp.Sync(); err != nil {
				s.stats.errors.Add(1)
				s.warn("sync", "nats: spool sync failed", "err", err)
			}
			s.flushCore()
			s.checkAckTimeout()
		}
		if s.failed.Load() {
			s.mu.Lock()
			if !s.spooling && s.failed.Load() {
				s.enterSpoolLocked("an in-flight publish failed")
			}
			s.mu.Unlock()
		}
		for ctx.Err() == nil && s.nc.IsConnected() {
			if s.needSetup.Load() {
				if err := s.setup(ctx); err != nil {
					if ctx.Err() != nil {
						return
					}
					s.stats.errors.Add(1)
					s.warn("setup", "nats: stream not usable yet, spooling and retrying", "stream", s.o.Stream, "err", err)
					if !retryAfter(ctx, &backoff) {
						return
					}
					continue
				}
				backoff = 0
			}
			if recs, _ := s.sp.Len(); recs == 0 {
				s.mu.Lock()
				if recs, _ := s.sp.Len(); recs == 0 && s.spooling {
					s.spooling = false
					s.log.Info("nats: spool drained, publishing directly again")
				}
				s.mu.Unlock()
				break
			}
			if err := s.resendBatch(ctx); err != nil {
				if ctx.Err() != nil {
					return
				}
				s.stats.errors.Add(1)
				if streamLost(err) || silentStream(err) {
					s.needSetup.Store(true)
				}
				s.sp.Rewind()
				s.warn("resend", "nats: re-sending spooled records failed, will retry", "err", err)
				if !retryAfter(ctx, &backoff) {
					return
				}
				continue
			}
			backoff = 0
		}
	}
}

// retryAfter doubles *backoff (100 ms to 5 s) and waits that long before
// the resender tries again; false when ctx ended meanwhile.
func retryAfter(ctx context.Context, backoff *time.Duration) bool {
	*backoff = min(max(2**backoff, 100*time.Millisecond), 5*time.Second)
	select {
	case <-ctx.Done():
		return false
	case <-time.After(*backoff):
		return true
	}
}

// checkAckTimeout flags a failure when the oldest unacknowledged publish
// has waited longer than natsPubAckWait. The stream is looked up again
// before the re-send: see silentStream.
func (s *NATSSink) checkAckTimeout() {
	s.fmu.Lock()
	stale := s.fhead < len(s.flights) && time.Since(s.flights[s.fhead].sent) > natsPubAckWait
	s.fmu.Unlock()
	if stale && !s.failed.Load() {
		s.stats.errors.Add(1)
		s.lastErr.Store(fmt.Sprintf("no ack within %v", natsPubAckWait))
		s.needSetup.Store(true)
		s.failed.Store(true)
	}
}

// silentStream reports an error after which the stream may be gone
// without the server saying so: a publish answered by nothing at all.
// That is what a missing stream looks like when some core subscriber
// (tschsensor tail in core mode, a SIEM) listens on our subjects: the
// server then has a responder and sends no "no responders" status. The
// sink looks the stream up (and recreates it) instead of re-sending into
// the void for ever.
func silentStream(err error) bool {
	return errors.Is(err, jetstream.ErrAsyncPublishTimeout) || errors.Is(err, nats.ErrTimeout)
}

// flushCore confirms core-mode publishes with a round trip.
func (s *NATSSink) flushCore() {
	if s.js != nil {
		return
	}
	n := s.unsent.Swap(0)
	if n == 0 {
		return
	}
	if err := s.nc.FlushTimeout(natsPubAckWait); err != nil {
		s.stats.errors.Add(1)
		return
	}
	s.stats.acked.Add(n)
}

// resendBatch publishes the next batch of spooled records and commits
// them once all are confirmed.
func (s *NATSSink) resendBatch(ctx context.Context) error {
	recs, err := s.sp.ReadBatch(s.o.MaxInFlight, natsResendMaxBytes)
	if err != nil {
		return err
	}
	if len(recs) > 0 {
		if s.jsr != nil {
			futs := make([]jetstream.PubAckFuture, 0, len(recs))
			for _, r := range recs {
				f, err := s.jsr.PublishMsgAsync(s.newMsg(r.Kind, r.Subject, r.ID, r.Data), s.pubOpts...)
				if err != nil {
					return fmt.Errorf("publish: %w", err)
				}
				futs = append(futs, f)
			}
			for _, f := range futs {
				select {
				case ack := <-f.Ok():
					if err := s.checkPubAck(ack); err != nil {
						return err
					}
				case err := <-f.Err():
					return fmt.Errorf("ack: %w", err)
				case <-ctx.Done():
					return ctx.Err()
				}
			}
		} else {
			for _, r := range recs {
				if err := s.nc.PublishMsg(s.newMsg(r.Kind, r.Subject, r.ID, r.Data)); err != nil {
					return fmt.Errorf("publish: %w", err)
				}
			}
			if err := s.nc.FlushTimeout(natsPubAckWait); err != nil {
				return fmt.Errorf("flush: %w", err)
			}
		}
	}
	// Commit even an empty batch: ReadBatch may have skipped bad frames.
	if err := s.sp.Commit(); err != nil {
		return err
	}
	n := s.stats.resent.Add(uint64(len(recs)))
	s.stats.acked.Add(uint64(len(recs)))
	if len(recs) > 0 {
		left, _ := s.sp.Len()
		s.note("resent", "nats: re-sent spooled records", "resent_total", n, "left_in_spool", left)
	}
	return nil
}

// Delivery reports the counters in the form every sensor summary, metric
// and stats record shows; safe from any goroutine.
func (s *NATSSink) Delivery() output.SinkDelivery {
	st := s.Stats()
	return output.SinkDelivery{Published: st.Published, Acked: st.Acked, Spooled: st.Spooled, Resent: st.Resent,
		Dropped: st.Dropped, DroppedAtClose: st.DroppedAtClose, SpoolRecords: st.SpoolRecords, Connected: s.Connected()}
}

// EmbeddedAddr is the address the embedded server listens on (the port it
// chose when asked for port 0), or "" without one.
func (s *NATSSink) EmbeddedAddr() string {
	if s.srv == nil {
		return ""
	}
	return s.srv.Addr().String()
}

// Connected says whether records can go out now: the connection is up and
// the stream was found (or created).
func (s *NATSSink) Connected() bool {
	return s.nc != nil && s.nc.IsConnected() && !s.needSetup.Load()
}

// Stats returns the counters so far.
func (s *NATSSink) Stats() NATSStats {
	st := NATSStats{
		Published: s.stats.published.Load(),
		Acked:     s.stats.acked.Load(),
		Spooled:   s.stats.spooled.Load(),
		Resent:    s.stats.resent.Load(),
		Dropped:   s.stats.dropped.Load(),
		Errors:    s.stats.errors.Load(),
		// Read after Dropped: a reader never sees more at close than
		// in total.
		DroppedAtClose: s.stats.droppedClose.Load(),
	}
	s.fmu.Lock()
	st.InFlight = len(s.fbyMsg)
	s.fmu.Unlock()
	if s.sp != nil {
		st.SpoolRecords, st.SpoolBytes = s.sp.Len()
	}
	return st
}

// Close stops accepting records and waits, until AckTimeout or ctx ends,
// for in-flight acks and for the spool to drain. What is still
// unacknowledged then stays in the spool for the next run. It logs the
// counts and shuts down the embedded server. It returns an error only
// when records were lost (dropped) or the spool could not be closed.
func (s *NATSSink) Close(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()

	wctx, cancel := context.WithTimeout(ctx, s.o.AckTimeout)
	defer cancel()
	poll := time.NewTicker(10 * time.Millisecond)
	defer poll.Stop()
	// In-flight acks first: the resender moves failures to the spool.
	for s.Stats().InFlight > 0 && !s.failed.Load() && wctx.Err() == nil {
		select {
		case <-wctx.Done():
		case <-s.space:
		case <-poll.C:
		}
	}
	s.mu.Lock()
	core := s.js == nil && !s.needSetup.Load()
	s.mu.Unlock()
	if core {
		n := s.unsent.Swap(0)
		err := nats.ErrConnectionClosed
		if s.nc.IsConnected() {
			err = s.nc.FlushWithContext(wctx)
		}
		switch {
		case err == nil:
			s.stats.acked.Add(n)
		case n > 0:
			// Core NATS cannot say whether they arrived: counted lost.
			s.stats.droppedClose.Add(n)
			s.log.Warn("nats: core NATS records not confirmed at close, counted as dropped", "records", n, "err", err)
		}
	}
	s.mu.Lock()
	if s.Stats().InFlight > 0 {
		s.enterSpoolLocked("closing with unacknowledged records")
	}
	s.mu.Unlock()
	s.poke()
	for wctx.Err() == nil {
		if recs, _ := s.sp.Len(); recs == 0 {
			break
		}
		select {
		case <-wctx.Done():
		case <-poll.C:
		}
	}
	s.stop()
	<-s.done
	s.nc.Close()
	var errs []error
	if err := s.sp.Close(); err != nil {
		errs = append(errs, err)
	}
	if s.srv != nil {
		s.srv.Shutdown()
		s.srv.WaitForShutdown()
	}
	st := s.Stats()
	s.log.Info("nats: closed", "published", st.Published, "acked", st.Acked, "spooled", st.Spooled,
		"resent", st.Resent, "dropped", st.Dropped, "errors", st.Errors,
		"left_in_spool", st.SpoolRecords, "spool", s.o.SpoolDir)
	if st.SpoolRecords > 0 {
		s.log.Warn("nats: records left in the spool for the next run", "records", st.SpoolRecords, "spool", s.o.SpoolDir)
	}
	if st.Dropped > 0 {
		errs = append(errs, fmt.Errorf("nats: %d records dropped (spool full or failing)", st.Dropped))
	}
	if st.DroppedAtClose > 0 {
		errs = append(errs, fmt.Errorf("nats: %d core NATS records not confirmed at close", st.DroppedAtClose))
	}
	return errors.Join(errs...)
}
