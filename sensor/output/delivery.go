package output

import "sync/atomic"

// SinkDelivery is what a sink that confirms delivery (NATS) counts.
type SinkDelivery struct {
	Published, Acked, Spooled, Resent uint64
	// Dropped counts records the sink lost: its spool full or failing;
	// DroppedAtClose those it could not confirm when shutdown's wait ended.
	Dropped, DroppedAtClose uint64
	// SpoolRecords waits in the spool now.
	SpoolRecords int64
	// Connected: the server and the stream answer now.
	Connected bool
}

// DeliverySink is a Sink that reports SinkDelivery; Delivery is safe from
// any goroutine.
type DeliverySink interface {
	Sink
	Delivery() SinkDelivery
}

// Drops counts records lost, by where. Every loss in the pipeline is
// counted here and nowhere else.
type Drops struct {
	// Queue: live records dropped on the full detector queue.
	Queue uint64 `json:"queue"`
	// Encode: events that could not be encoded as JSON.
	Encode uint64 `json:"encode"`
	// Sink: records a sink refused (a write error on stdout, NATS closed).
	Sink uint64 `json:"sink"`
	// Spool: NATS records lost because the spool was full or failing.
	Spool uint64 `json:"spool"`
	// Shutdown: records not confirmed when shutdown's wait ended (core
	// NATS, which has no spool for them).
	Shutdown uint64 `json:"shutdown"`
}

// Total is the sum of every reason.
func (d Drops) Total() uint64 { return d.Queue + d.Encode + d.Sink + d.Spool + d.Shutdown }

// Delivery is the "delivery" section of the stats record, the metrics and
// the summary: what reached the outputs, what waits, what was lost.
type Delivery struct {
	// Published, Acked, Spooled, Resent: the NATS sink's records handed
	// to it, confirmed by the server, written to the spool, re-sent from
	// it. Zero without NATS.
	Published uint64 `json:"published"`
	Acked     uint64 `json:"acked"`
	Spooled   uint64 `json:"spooled"`
	Resent    uint64 `json:"resent"`
	// SpoolRecords waits in the spool now (left for the next run at exit).
	SpoolRecords int64 `json:"spool_records"`
	// NATSConnected is set when NATS is an output: whether the server and
	// the stream answer now.
	NATSConnected *bool  `json:"nats_connected,omitempty"`
	Dropped       Drops  `json:"dropped"`
	DroppedTotal  uint64 `json:"dropped_total"`
}

// outputDrops are Output's own loss counters, atomics because metrics read
// them from other goroutines.
type outputDrops struct {
	queue, encode, sink atomic.Uint64
}
