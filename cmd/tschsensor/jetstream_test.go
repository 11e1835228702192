package main

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// jetStreamServer runs a real nats-server with JetStream on loopback until
// the test ends. Port -1 lets the server pick one; a test that restarts a
// server passes the port (and the store) of the one it stopped, so that the
// sensor finds the new server where it looks for the old one.
func jetStreamServer(t *testing.T, port int, store string) *server.Server {
	t.Helper()
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: port, NoSigs: true, NoLog: true,
		JetStream: true, StoreDir: store})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	if !srv.ReadyForConnections(20 * time.Second) {
		t.Fatalf("nats-server on port %d not ready", port)
	}
	t.Cleanup(srv.Shutdown)
	return srv
}

// startJetStream runs a JetStream server on a port of its own choosing.
func startJetStream(t *testing.T) *server.Server {
	t.Helper()
	return jetStreamServer(t, -1, t.TempDir())
}

// jetStreamAt starts a JetStream server on a given port (a server coming up
// where a sensor already looks for it).
func jetStreamAt(t *testing.T, port int) *server.Server {
	t.Helper()
	return jetStreamServer(t, port, t.TempDir())
}

// sensorStream opens the stream the sensor publishes to by default on the
// server at url; the connection closes when the test ends.
func sensorStream(t *testing.T, url string) jetstream.Stream {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, "TSCHSENSOR")
	if err != nil {
		t.Fatal(err)
	}
	return st
}
