package output

import "context"

// Record is one encoded output line (an event, an alert or a metric) on its
// way to the sinks. JSON holds the line without the trailing newline.
type Record struct {
	// Kind is "event", "alert" or "metric".
	Kind string
	// Subject is relative to the sink's prefix, lower case, dot separated:
	// "event.itaskschedulerservice.schrpcregistertask", "alert.atexec", "stats".
	Subject string
	// ID is the record's stable event.id, used for de-duplication.
	ID string
	// JSON is only valid during Publish: the output reuses its buffer for
	// the next record, so a sink that keeps the bytes copies them.
	JSON []byte
}

// Sink delivers records. Publish is called from one goroutine, in order; a
// sink that cannot deliver counts the record as dropped rather than block for
// ever. Close flushes and waits for acknowledgements until ctx ends.
type Sink interface {
	Publish(rec Record) error
	Close(ctx context.Context) error
}
