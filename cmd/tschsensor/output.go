package main

import (
	"context"
	"io"
	"log/slog"

	"github.com/tschsensor/tschsensor/sensor/natsout"
	"github.com/tschsensor/tschsensor/sensor/output"
)

// openNATS connects the NATS sink when --nats (or its variable) is set.
func openNATS(ctx context.Context, o *natsout.NATSOptions, observer string, stderr io.Writer) (output.Sink, error) {
	if len(o.URLs) == 0 && !o.Embedded {
		return nil, nil
	}
	if o.SensorID == "" {
		o.SensorID = observer
	}
	if err := o.Validate(); err != nil {
		return nil, err
	}
	// Info: connection changes, re-sends and drops are worth seeing.
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	s, err := natsout.NewNATSSink(ctx, *o, log)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// openOutput builds the sinks replay and run share: JSON lines on stdout
// (unless noStdout; flushed per line for live capture) and NATS when set.
func openOutput(ctx context.Context, nf *natsout.NATSOptions, observer string, stdout, stderr io.Writer, noStdout, flushEach bool) (*output.Output, error) {
	var sinks []output.Sink
	if !noStdout {
		sinks = append(sinks, output.NewWriterSink(stdout, flushEach))
	}
	natsSink, err := openNATS(ctx, nf, observer, stderr)
	if err != nil {
		return nil, err
	}
	if natsSink != nil {
		sinks = append(sinks, natsSink)
	}
	return output.NewOutput(sinks...), nil
}
