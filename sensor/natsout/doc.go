// Package natsout publishes the sensor's records to NATS: core NATS or
// JetStream with acknowledgements, a bounded on-disk spool for outages, an
// embedded nats-server for single-box set-ups, and the reader behind
// `tschsensor tail`. It is apart from package sensor so that the packet path
// and its fuzz targets do not link a whole NATS server.
package natsout

import "github.com/tschsensor/tschsensor/sensor/output"

// Record is what the sensor hands its sinks.
type Record = output.Record

var _ output.Sink = (*NATSSink)(nil)
