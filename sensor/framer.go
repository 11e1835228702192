package sensor

import "github.com/tschsensor/tschsensor/dissect"

// A half frames one direction of a byte stream into messages for its owner
// (a connection's application parser, or a named pipe's DCE-RPC channel).
// Every transport shares it: a transport says where messages start and how
// long they are (framer), the half does the rest. A half is always in one
// of five modes, tried in this order on each delivery:
//
//   - skip: the rest of a message is dropped without buffering: file data,
//     a message past maxMessage, a buffer the memory budget evicted; or
//     passed on: streamed into a pipe's framer (see pipestream.go);
//   - hunt: after a gap or mid-stream, look for the next message start;
//   - frame: at a message start with nothing buffered, hand on whole
//     messages in place, without copying;
//   - header: gather a header split across deliveries until the message's
//     length is known;
//   - body: gather a message split across deliveries; its head is offered
//     to the owner (partial), which may take it and skip the rest.

// framer is what a half needs from its owner.
type framer interface {
	// framing returns the message length at b: n>0 complete length, n==0
	// more header bytes needed, n<0 not a message start.
	framing(b []byte) int
	// start returns the offset of the first message start in b, -1 if none.
	start(b []byte) int
	handle(dir int, msg []byte)
	// partial is offered the head of a message too large to buffer or
	// still arriving; true means the owner took it: the rest is skipped.
	partial(dir int, head []byte, total int) bool
	anomaly(name string)
	maxMessage() int
	budget() msgBudget
}

// partialHead is how much of a large message is handed to partial: enough
// for an SMB2 header and the fixed part of READ/WRITE bodies.
const partialHead = 4 + dissect.SMB2HeaderLen + 64

// half frames one direction of a byte stream into messages, buffering only
// what spans deliveries and skipping what the owner does not need.
type half struct {
	buf      []byte
	want     int // length of the message being buffered, 0 while unknown
	skip     int
	unsynced bool // after a gap: hunt for the next message start
	offered  bool // partial already asked for the buffered message
	afterGap bool // the hunt follows lost data
	hunted   int
	// pass streams skipped bytes into a pipe (see pipestream.go).
	pass passTarget
	// The memory budget's account of buf (see budget.go).
	charged      int64
	listed, busy bool
	prev, next   *half
}

// maxHeaderPeek is the most bytes of a message start that a hunt needs to
// recognise it (DCE-RPC header); that much is kept between deliveries.
const maxHeaderPeek = dissect.DCERPCHeaderLen

// trimHunt keeps only the tail of the hunt buffer that may begin a header.
func (h *half) trimHunt() {
	if n := len(h.buf); n > maxHeaderPeek {
		copy(h.buf, h.buf[n-maxHeaderPeek:])
		h.buf = h.buf[:maxHeaderPeek]
	}
}

// lost says that bytes of the stream were lost: what was buffered is
// dropped and the next message start hunted for.
func (h *half) lost() {
	if h.pass.pipe != nil {
		h.pass.stop()
	}
	h.buf = h.buf[:0]
	h.want, h.skip, h.offered = 0, 0, false
	h.unsynced = true
	h.afterGap = true
}

// feed frames data into messages and accounts what stays buffered.
func (h *half) feed(f framer, dir int, data []byte) {
	h.busy = true
	h.feedData(f, dir, data)
	h.busy = false
	f.budget().settle(h)
}

// feedData runs data through the modes; each step consumes some of it and
// returns the rest.
func (h *half) feedData(f framer, dir int, data []byte) {
	for len(data) > 0 {
		switch {
		case h.skip > 0 && h.pass.pipe == nil:
			data = h.skipping(data)
		case h.skip > 0:
			data = h.passing(data)
		case h.unsynced:
			data = h.hunt(f, data)
		case len(h.buf) == 0:
			data = h.frame(f, dir, data)
		case h.want == 0:
			data = h.header(f, dir, data)
		default:
			data = h.body(f, dir, data)
		}
	}
}

// skipping drops the rest of a message: bulk file data goes this way.
func (h *half) skipping(data []byte) []byte {
	n := min(h.skip, len(data))
	h.skip -= n
	return data[n:]
}

// passing streams the rest of a message into a pipe's framer.
func (h *half) passing(data []byte) []byte {
	n := min(h.skip, len(data))
	h.pass.take(data[:n])
	h.skip -= n
	if h.skip == 0 {
		h.pass = passTarget{}
	}
	return data[n:]
}

// hunt looks for the next message start over what this delivery adds to
// the few bytes kept from the last one, so that a header split across
// deliveries is found.
func (h *half) hunt(f framer, data []byte) []byte {
	var i int
	if len(h.buf) == 0 {
		i = f.start(data)
	} else {
		h.buf = append(h.buf, data...)
		data = h.buf
		i = f.start(data)
	}
	if i < 0 {
		if len(h.buf) == 0 {
			h.buf = append(h.buf, data...)
		}
		h.trimHunt()
		return nil
	}
	if h.afterGap || i > 0 {
		// Counted only when bytes were really skipped to find it.
		f.anomaly("resync")
	}
	h.afterGap = false
	h.unsynced = false
	if len(h.buf) > 0 {
		data = append([]byte(nil), data[i:]...)
		h.buf = h.buf[:0]
		return data
	}
	return data[i:]
}

// frame hands on the whole messages at the start of data in place; a
// message that continues beyond it is offered to partial, skipped when too
// large, or buffered.
func (h *half) frame(f framer, dir int, data []byte) []byte {
	n := f.framing(data)
	switch {
	case n < 0:
		f.anomaly("bad_message_header")
		h.unsynced = true
		return data[1:]
	case n == 0:
		h.buf = append(h.buf, data...)
		return nil
	case n <= len(data):
		f.handle(dir, data[:n])
		return data[n:]
	}
	if len(data) >= partialHead && f.partial(dir, data, n) {
		h.skip = n - len(data)
		return nil
	}
	if n > f.maxMessage() {
		f.anomaly("message_too_large")
		h.skip = n - len(data)
		return nil
	}
	h.offered = len(data) >= partialHead
	if h.offered {
		// Buffered for sure: allocated once at its size (see body).
		h.buf = make([]byte, 0, n)
	}
	h.buf = append(h.buf, data...)
	h.want = n
	return nil
}

// header gathers a message header split across deliveries, a few bytes at
// a time, until framing knows the message's length.
func (h *half) header(f framer, dir int, data []byte) []byte {
	need := 16 - len(h.buf)
	take := min(max(need, 1), len(data))
	h.buf = append(h.buf, data[:take]...)
	data = data[take:]
	n := f.framing(h.buf)
	switch {
	case n < 0:
		f.anomaly("bad_message_header")
		h.buf = h.buf[:0]
		h.unsynced = true
		return data
	case n == 0:
		return data
	}
	h.want = n
	if n > f.maxMessage() && len(h.buf) < partialHead {
		// Gather the head first; partial may still claim it.
		return data
	}
	if n <= len(h.buf) {
		// Framing needed fewer bytes than taken: hand back the rest.
		extra := h.buf[n:]
		f.handle(dir, h.buf[:n])
		rest := append([]byte(nil), extra...)
		h.buf, h.want, h.offered = h.buf[:0], 0, false
		data = append(rest, data...)
	}
	return data
}

// body gathers a message of known length. Once partialHead bytes are in,
// partial is offered the head: taken, or too large, the rest is skipped.
func (h *half) body(f framer, dir int, data []byte) []byte {
	take := min(h.want-len(h.buf), len(data))
	if !h.offered && len(h.buf) < partialHead {
		t := min(partialHead-len(h.buf), take)
		h.buf = append(h.buf, data[:t]...)
		data, take = data[t:], take-t
		if len(h.buf) >= partialHead {
			h.offered = true
			if h.want > len(h.buf) && f.partial(dir, h.buf, h.want) {
				h.skip = h.want - len(h.buf)
				h.buf, h.want, h.offered = h.buf[:0], 0, false
				return data
			}
			if h.want > f.maxMessage() {
				f.anomaly("message_too_large")
				h.skip = h.want - len(h.buf)
				h.buf, h.want, h.offered = h.buf[:0], 0, false
				return data
			}
		}
	}
	if h.offered && cap(h.buf) < h.want && h.want <= f.maxMessage() {
		// Partial passed on it: the message is buffered. One allocation
		// its size: no garbage from growing it, and the memory budget
		// sees it whole from the start.
		h.buf = append(make([]byte, 0, h.want), h.buf...)
	}
	h.buf = append(h.buf, data[:take]...)
	data = data[take:]
	if len(h.buf) == h.want {
		f.handle(dir, h.buf)
		h.reset()
	}
	return data
}

// reset drops the buffered message, releasing a large buffer.
func (h *half) reset() {
	if cap(h.buf) > 256<<10 {
		h.buf = nil
	} else {
		h.buf = h.buf[:0]
	}
	h.want, h.offered = 0, false
}
