package sensor

import (
	"net/netip"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/reassembly"

	"github.com/tschsensor/tschsensor/detect"
	"github.com/tschsensor/tschsensor/dissect"
)

// Well-known ports: a hint for which side is the server; content decides.
const (
	portSMB     = 445
	portNetBIOS = 139
	portEPM     = 135
)

type connProto uint8

const (
	protoUnknown connProto = iota // classify is gathering the first bytes
	protoApp                      // app parses the connection
	protoIgnored
)

type streamFactory struct{ w *Worker }

func (f *streamFactory) New(netFlow, tcpFlow gopacket.Flow, tcp *layers.TCP, ac reassembly.AssemblerContext) reassembly.Stream {
	w := f.w
	w.active++
	c := &conn{w: w, env: &w.env, vlan: w.f.vlan, key: w.key}
	w.connAdded(c)
	src, dst := netFlow.Endpoints()
	sp, dp := tcpFlow.Endpoints()
	c.addr[0], c.addr[1] = addrOf(src), addrOf(dst)
	c.port[0] = uint16(layers.TCPPort(beUint16(sp.Raw())))
	c.port[1] = uint16(layers.TCPPort(beUint16(dp.Raw())))
	// The SYN sender is the client; without a SYN, well-known ports and then
	// message content decide (see setClient).
	switch {
	case tcp.SYN && !tcp.ACK:
		c.setClient(0)
	case tcp.SYN && tcp.ACK:
		c.setClient(1)
	case isServerPort(c.port[1]) && !isServerPort(c.port[0]):
		c.setClient(0)
	case isServerPort(c.port[0]) && !isServerPort(c.port[1]):
		c.setClient(1)
	default:
		c.client = -1
	}
	return c
}

func isServerPort(p uint16) bool { return p == portSMB || p == portNetBIOS || p == portEPM }

func beUint16(b []byte) uint16 {
	if len(b) < 2 {
		return 0
	}
	return uint16(b[0])<<8 | uint16(b[1])
}

// conn is one TCP connection's state: framing per direction and the SMB or
// DCE-RPC state machine above it. Direction 0 is the first packet's sender.
type conn struct {
	// w runs the connection (reassembly, flow table, connection bound);
	// what the state machines above it use is in env.
	w      *Worker
	env    *connEnv
	addr   [2]netip.Addr
	port   [2]uint16
	vlan   uint16
	key    flowKey // the flow table's key
	lru    connLink
	client int // direction index of the client, -1 while unknown
	proto  connProto
	half   [2]half
	app    appParser // set with proto protoApp
	names  [2]string // NetBIOS called (server) and calling (client) names
	frame  uint64    // frame number of the packet being processed
	ci     gopacket.CaptureInfo
	// keys counts the records handed on per identifying content, so that
	// records otherwise equal get distinct event ids (detect.Call.Dup).
	keys map[detect.RecordKey]uint32
}

// maxConnKeys bounds conn.keys; past it the table starts again. Equal keys
// share a capture time, so they come close together in a connection.
const maxConnKeys = 4096

// disambiguate returns how many records of this connection had key k
// before.
func (c *conn) disambiguate(k detect.RecordKey) uint32 {
	if c.keys == nil || len(c.keys) >= maxConnKeys {
		c.keys = make(map[detect.RecordKey]uint32)
	}
	n := c.keys[k]
	c.keys[k] = n + 1
	return n
}

func (c *conn) setClient(dir int) { c.client = dir }

// endpoints returns client and server as the detector wants them; while the
// client is unknown the first sender is taken as the client.
func (c *conn) endpoints() detect.Endpoints {
	cl := c.client
	if cl < 0 {
		cl = 0
	}
	return detect.Endpoints{Client: c.addr[cl], Server: c.addr[1-cl], ClientPort: c.port[cl], ServerPort: c.port[1-cl],
		VLAN: c.vlan, ServerName: c.names[0], ClientName: c.names[1]}
}

func (c *conn) Accept(tcp *layers.TCP, ci gopacket.CaptureInfo, dir reassembly.TCPFlowDirection, nextSeq reassembly.Sequence, start *bool, ac reassembly.AssemblerContext) bool {
	// Mid-stream connections start wherever the capture does.
	*start = true
	c.lru.seq[dirIndex(dir)] = uint32(tcp.Seq)
	if c.lru.evicting {
		return true // the resets that end it (see conncap.go)
	}
	if c.proto == protoIgnored && c.w.rearm {
		// The flow table picked the flow up again (an endpoint-mapper
		// answer named its port): hunt from here.
		c.proto = protoUnknown
		c.half = [2]half{}
	}
	return c.proto != protoIgnored
}

func (c *conn) ReassembledSG(sg reassembly.ScatterGather, ac reassembly.AssemblerContext) {
	if c.proto == protoIgnored {
		return
	}
	if pc, ok := ac.(*pktCtx); ok {
		c.frame, c.ci = pc.frame, pc.ci
	}
	length, _ := sg.Lengths()
	rdir, _, _, skip := sg.Info()
	dir := 0
	if rdir == reassembly.TCPDirServerToClient {
		dir = 1
	}
	h := &c.half[dir]
	if skip != 0 {
		c.env.stats.Gaps++
		if skip > 0 {
			c.env.stats.GapBytes += uint64(skip)
		}
		h.lost()
		if c.app != nil {
			c.app.gap(dir)
		}
	}
	if length == 0 {
		return
	}
	data := sg.Fetch(length)
	if c.proto == protoUnknown {
		c.classify(dir, data)
		return
	}
	h.feed(c, dir, data)
}

// classify decides from the ports and first bytes which application
// protocol the connection carries (appProbes). Bytes are gathered per
// direction until a header shows, however the stream is segmented;
// mid-stream connections are given HuntLimit bytes to show one.
func (c *conn) classify(dir int, data []byte) {
	h := &c.half[dir]
	if h.hunted == 0 && c.half[1-dir].hunted == 0 {
		// Connections are counted when they carry data: a lone ACK after
		// the close does not make one.
		c.env.stats.Connections++
	}
	from := max(len(h.buf)-maxHeaderPeek, 0)
	h.buf = append(h.buf, data...)
	h.hunted += len(data)
	for _, p := range appProbes() {
		if p.match(c, h.buf[from:]) {
			c.setApp(p.open(c))
			break
		}
	}
	if c.app == nil {
		if c.half[0].hunted+c.half[1].hunted > c.env.opt.HuntLimit {
			c.proto = protoIgnored
			c.half[0].buf, c.half[1].buf = nil, nil
			c.w.flowIgnore(&c.key)
			return
		}
		h.trimHunt()
		return
	}
	// What was gathered is handed to the framer, which finds the first
	// message start in it.
	for d := range c.half {
		hd := &c.half[d]
		pending := hd.buf
		hd.buf = nil
		// A stream caught from its start begins with a message (an NBSS
		// session request too); a mid-stream one is hunted through.
		hd.unsynced = c.framing(pending) < 0
		if d == dir || len(pending) > 0 {
			hd.feed(c, d, pending)
		}
	}
}

func (c *conn) ReassemblyComplete(ac reassembly.AssemblerContext) bool {
	if pc, ok := ac.(*pktCtx); ok {
		c.frame, c.ci = pc.frame, pc.ci
	}
	if c.app != nil {
		c.app.close()
	}
	c.w.active--
	c.w.connEnded(c)
	return true
}

// setApp hands the connection to an application parser.
func (c *conn) setApp(a appParser) { c.proto, c.app = protoApp, a }

// The halves frame with the application parser (framer): the conn adds
// the anomaly count.
func (c *conn) handle(dir int, msg []byte)                   { c.lru.carried = true; c.app.message(dir, msg) }
func (c *conn) framing(b []byte) int                         { return c.app.framing(b) }
func (c *conn) start(b []byte) int                           { return c.app.start(b) }
func (c *conn) partial(dir int, head []byte, total int) bool { return c.app.partial(dir, head, total) }
func (c *conn) maxMessage() int                              { return c.app.maxMessage() }
func (c *conn) anomaly(name string)                          { c.env.stats.anomaly(name) }
func (c *conn) budget() msgBudget                            { return c.env.mem }

const maxEncryptedMessage = 8<<20 + 64<<10

// nbssFrame frames NBSS (and direct-TCP SMB) messages.
func nbssFrame(b []byte) int {
	if len(b) < dissect.NBSSHeaderLen {
		return 0
	}
	typ, n, ok := dissect.PeekNBSS(b)
	if !ok {
		return -1
	}
	if typ == dissect.NBSSMessage && n > 0 {
		if len(b) >= 8 && dissect.ClassifySMB(b[4:]) == dissect.SMBNone {
			return -1
		}
	}
	return dissect.NBSSHeaderLen + n
}

// smbStart finds the first NBSS header followed by an SMB protocol id.
func smbStart(b []byte) int {
	for i := 0; i+8 <= len(b); i++ {
		if b[i+5] != 'S' || b[i+6] != 'M' || b[i+7] != 'B' || b[i] != 0 {
			continue
		}
		if k := dissect.ClassifySMB(b[i+4:]); k != dissect.SMBNone {
			if _, n, ok := dissect.PeekNBSS(b[i:]); ok && n >= 32 {
				return i
			}
		}
	}
	return -1
}

func rpcFrame(b []byte) int {
	var h dissect.DCERPCHeader
	ok, need := dissect.PeekDCERPC(b, &h)
	if !ok {
		if need > 0 {
			return 0
		}
		return -1
	}
	return int(h.FragLen)
}

// rpcStart finds the first plausible DCE-RPC connection-oriented header.
func rpcStart(b []byte) int {
	var h dissect.DCERPCHeader
	for i := 0; i+dissect.DCERPCHeaderLen <= len(b); i++ {
		if b[i] != 5 {
			continue
		}
		if ok, _ := dissect.PeekDCERPC(b[i:], &h); ok {
			return i
		}
	}
	return -1
}

// framer is what half needs from its owner.
type framer interface {
	framing(b []byte) int
	start(b []byte) int
	handle(dir int, msg []byte)
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

func (h *half) lost() {
	if h.pass.pipe != nil {
		h.pass.stop()
	}
	h.buf = h.buf[:0]
	h.want, h.skip, h.offered = 0, 0, false
	h.unsynced = true
	h.afterGap = true
}

func (h *half) feedData(f framer, dir int, data []byte) {
	for len(data) > 0 {
		if h.skip > 0 {
			n := min(h.skip, len(data))
			if h.pass.pipe != nil {
				h.pass.take(data[:n])
			}
			h.skip -= n
			if h.skip == 0 {
				h.pass = passTarget{}
			}
			data = data[n:]
			continue
		}
		if h.unsynced {
			// Hunt over what this delivery adds to the few bytes kept from
			// the last one, so a header split across deliveries is found.
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
				return
			}
			if h.afterGap || i > 0 {
				// Counted only when bytes were really skipped to find it.
				f.anomaly("resync")
			}
			h.afterGap = false
			if len(h.buf) > 0 {
				data = append([]byte(nil), data[i:]...)
				h.buf = h.buf[:0]
			} else {
				data = data[i:]
			}
			h.unsynced = false
			continue
		}
		if len(h.buf) == 0 {
			n := f.framing(data)
			switch {
			case n < 0:
				f.anomaly("bad_message_header")
				h.unsynced = true
				data = data[1:]
				continue
			case n == 0:
				h.buf = append(h.buf, data...)
				return
			case n <= len(data):
				f.handle(dir, data[:n])
				data = data[n:]
				continue
			}
			// A message continues beyond this delivery.
			if len(data) >= partialHead && f.partial(dir, data, n) {
				h.skip = n - len(data)
				return
			}
			if n > f.maxMessage() {
				f.anomaly("message_too_large")
				h.skip = n - len(data)
				return
			}
			h.offered = len(data) >= partialHead
			if h.offered {
				// Buffered for sure: allocated once at its size (see below).
				h.buf = make([]byte, 0, n)
			}
			h.buf = append(h.buf, data...)
			h.want = n
			return
		}
		if h.want == 0 {
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
				continue
			case n == 0:
				continue
			}
			if n > f.maxMessage() && len(h.buf) < partialHead {
				// Gather the head first; partial may still claim it.
				h.want = n
				continue
			}
			h.want = n
			if n <= len(h.buf) {
				// Framing needed fewer bytes than taken: hand back the rest.
				extra := h.buf[n:]
				msg := h.buf[:n]
				f.handle(dir, msg)
				rest := append([]byte(nil), extra...)
				h.buf, h.want, h.offered = h.buf[:0], 0, false
				data = append(rest, data...)
			}
			continue
		}
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
					continue
				}
				if h.want > f.maxMessage() {
					f.anomaly("message_too_large")
					h.skip = h.want - len(h.buf)
					h.buf, h.want, h.offered = h.buf[:0], 0, false
					continue
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
	}
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
