package main

import (
	"context"
	"github.com/tschsensor/tschsensor/sensor/natsout"
	"io"
	"log/slog"

	"github.com/tschsensor/tschsensor/sensor"
)

// openNATS connects the NATS sink when --nats (or its variable) is set.
func openNATS(ctx context.Context, o *natsout.NATSOptions, observer string, stderr io.Writer) (sensor.Sink, error) {
	if len(o.URLs) == 0 && !o.Embedded {
		return nil, nil
	}
	if o.SensorID == "" {
		o.SensorID = observer
	}
	if err := o.Validate(); err != nil {
		return nil, err
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	s, err := natsout.NewNATSSink(ctx, *o, log)
	if err != nil {
		return nil, err
	}
	return s, nil
}
