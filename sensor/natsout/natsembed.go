package natsout

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// embeddedReadyWait bounds how long the embedded server may take to listen.
const embeddedReadyWait = 10 * time.Second

// startEmbeddedNATS runs a nats-server with JetStream (file storage in
// dir) inside the process, listening on addr so that other tools (tschsensor
// tail, the nats CLI) can read the stream while the sensor runs.
func startEmbeddedNATS(addr, dir string, log *slog.Logger) (*server.Server, error) {
	host, port, err := splitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("nats: embedded server address %q: %w", addr, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("nats: embedded server store: %w", err)
	}
	// Fail with a plain message if the port is taken; the server itself
	// would only log it.
	if port != 0 {
		l, err := net.Listen("tcp", net.JoinHostPort(host, fmt.Sprint(port)))
		if err != nil {
			return nil, fmt.Errorf("nats: embedded server cannot listen on %s: %w", addr, err)
		}
		l.Close()
	}
	if port == 0 {
		// Port 0 means "any free port" here, as for net.Listen; to
		// nats-server it means its default, 4222.
		port = server.RANDOM_PORT
	}
	opts := &server.Options{
		ServerName: "tschsensor-embedded",
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   dir,
		NoSigs:     true,
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("nats: embedded server: %w", err)
	}
	sl := &slogServerLogger{log: log.With("component", "nats-server")}
	srv.SetLoggerV2(sl, false, false, false)
	srv.Start()
	if !srv.ReadyForConnections(embeddedReadyWait) {
		srv.Shutdown()
		srv.WaitForShutdown()
		if msg := sl.fatal(); msg != "" {
			return nil, fmt.Errorf("nats: embedded server on %s: %s", addr, msg)
		}
		return nil, fmt.Errorf("nats: embedded server on %s not ready after %v", addr, embeddedReadyWait)
	}
	if !srv.JetStreamEnabled() {
		srv.Shutdown()
		srv.WaitForShutdown()
		return nil, fmt.Errorf("nats: embedded server could not enable JetStream in %s: %s", dir, sl.fatal())
	}
	log.Info("nats: embedded server running", "addr", srv.Addr().String(), "store", dir)
	return srv, nil
}

// slogServerLogger routes nats-server logs to slog. The server's notices
// are chatty start-up banners, so they go to debug. Fatalf must not exit
// the process: it is kept for the start-up error.
type slogServerLogger struct {
	log     *slog.Logger
	mu      sync.Mutex
	lastErr string
}

func (l *slogServerLogger) fatal() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lastErr
}

func (l *slogServerLogger) keep(msg string) {
	l.mu.Lock()
	l.lastErr = msg
	l.mu.Unlock()
}

func (l *slogServerLogger) Noticef(format string, v ...any) {
	l.log.Debug(fmt.Sprintf(format, v...))
}

func (l *slogServerLogger) Warnf(format string, v ...any) {
	l.log.Warn(fmt.Sprintf(format, v...))
}

func (l *slogServerLogger) Fatalf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	l.keep(msg)
	l.log.Error(msg)
}

func (l *slogServerLogger) Errorf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	l.keep(msg)
	l.log.Error(msg)
}

func (l *slogServerLogger) Debugf(format string, v ...any) {
	l.log.Debug(fmt.Sprintf(format, v...))
}

func (l *slogServerLogger) Tracef(format string, v ...any) {
	l.log.Debug(fmt.Sprintf(format, v...))
}
