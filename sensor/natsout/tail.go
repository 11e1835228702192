package natsout

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TailOptions selects what Tail prints.
type TailOptions struct {
	// Since starts a JetStream read at this time; zero means "new
	// messages only" unless All is set.
	Since time.Time
	// All reads the whole stream.
	All bool
	// Subject filters, relative to the prefix ("alert.>") or absolute
	// when it starts with "<prefix>."; empty means everything.
	Subject string
	// Count stops after this many messages (0: until ctx ends).
	Count int
}

// ParseSince reads a --since value: an RFC 3339 time, a duration back from
// now ("15m", "24h"), or "all" for the whole stream.
func ParseSince(v string, now time.Time) (since time.Time, all bool, err error) {
	switch v {
	case "":
		return time.Time{}, false, nil
	case "all", "start", "0":
		return time.Time{}, true, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t, false, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return time.Time{}, false, fmt.Errorf("since %q: want an RFC 3339 time, a positive duration or \"all\"", v)
	}
	return now.Add(-d), false, nil
}

// Tail prints one line per message (the JSON payload) published under the
// options' subject prefix. With a JetStream stream it reads from the chosen
// point with an ephemeral ordered consumer; otherwise it subscribes with
// core NATS and sees only new messages. With Embedded options it connects
// to the embedded server's address, that is to a running sensor's server.
func Tail(ctx context.Context, o NATSOptions, t TailOptions, out io.Writer, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if o.Embedded {
		o.URLs = []string{"nats://" + o.EmbeddedAddr}
		if o.EmbeddedAddr == "" {
			o.URLs = []string{"nats://" + DefaultEmbeddedAddr}
		}
		o.Embedded = false
	}
	if err := o.Validate(); err != nil {
		return err
	}
	filter := o.SubjectPrefix + ".>"
	if t.Subject != "" {
		filter = t.Subject
		if !strings.HasPrefix(filter, o.SubjectPrefix+".") {
			filter = o.SubjectPrefix + "." + filter
		}
	}
	nc, err := o.Connect("tschsensor tail", log)
	if err != nil {
		return err
	}
	defer nc.Close()

	// emit flushes every line itself: tail output is read live.
	w := bufio.NewWriter(out)
	var (
		mu     sync.Mutex
		n      int
		werr   error
		doneCh = make(chan struct{})
		once   sync.Once
	)
	emit := func(data []byte) {
		mu.Lock()
		defer mu.Unlock()
		if werr != nil || (t.Count > 0 && n >= t.Count) {
			return
		}
		if _, err := w.Write(data); err == nil {
			err = w.WriteByte('\n')
			if err == nil {
				err = w.Flush()
			}
			werr = err
		} else {
			werr = err
		}
		n++
		if werr != nil || (t.Count > 0 && n >= t.Count) {
			once.Do(func() { close(doneCh) })
		}
	}

	stream := ""
	if o.JetStream != "off" {
		js, err := jetstream.New(nc)
		if err != nil {
			return fmt.Errorf("nats: jetstream: %w", err)
		}
		lctx, cancel := context.WithTimeout(ctx, natsConnectTimeout)
		_, err = js.Stream(lctx, o.Stream)
		cancel()
		switch {
		case err == nil:
			stream = o.Stream
			cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}, DeliverPolicy: jetstream.DeliverNewPolicy}
			switch {
			case t.All:
				cfg.DeliverPolicy = jetstream.DeliverAllPolicy
			case !t.Since.IsZero():
				since := t.Since
				cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &since
			}
			cctx, cancel := context.WithTimeout(ctx, natsConnectTimeout)
			cons, err := js.OrderedConsumer(cctx, o.Stream, cfg)
			cancel()
			if err != nil {
				return fmt.Errorf("nats: consumer on stream %s: %w", o.Stream, err)
			}
			cc, err := cons.Consume(func(m jetstream.Msg) { emit(m.Data()) })
			if err != nil {
				return fmt.Errorf("nats: consume stream %s: %w", o.Stream, err)
			}
			defer cc.Stop()
		case o.JetStream == "on" || !(errors.Is(err, jetstream.ErrStreamNotFound) ||
			errors.Is(err, jetstream.ErrJetStreamNotEnabled) || errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount)):
			return fmt.Errorf("nats: stream %s: %w", o.Stream, err)
		}
	}
	if stream == "" {
		if t.All || !t.Since.IsZero() {
			return fmt.Errorf("nats: --since needs the JetStream stream %s, which is not there", o.Stream)
		}
		sub, err := nc.Subscribe(filter, func(m *nats.Msg) { emit(m.Data) })
		if err != nil {
			return fmt.Errorf("nats: subscribe %s: %w", filter, err)
		}
		defer sub.Unsubscribe()
		if err := nc.Flush(); err != nil {
			return fmt.Errorf("nats: subscribe %s: %w", filter, err)
		}
	}
	log.Info("tail: reading", "subject", filter, "stream", stream)
	select {
	case <-ctx.Done():
	case <-doneCh:
	}
	mu.Lock()
	defer mu.Unlock()
	if werr != nil {
		return fmt.Errorf("tail: write: %w", werr)
	}
	return nil
}
