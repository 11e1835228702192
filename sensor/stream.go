package sensor

import (
	"net/netip"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/reassembly"

	"github.com/tschsensor/tschsensor/detect"
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
	c.port[0] = beUint16(sp.Raw())
	c.port[1] = beUint16(dp.Raw())
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

// isServerPort: the well-known ports the flow table classifies by (portVerdict).
func isServerPort(p uint16) bool { return portVerdict(p) != verdictUnknown }

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
// share a capture time, call id and opnum (or file operation and path):
// records of one packet, finished one after the other. The table keeps
// its room when cleared, so the bound is also what every connection may
// hold: at 4096, 16,000 channels that each finished 250 calls held
// 150 MB of keys.
const maxConnKeys = 64

// disambiguate returns how many records of this connection had key k
// before.
func (c *conn) disambiguate(k detect.RecordKey) uint32 {
	if c.keys == nil {
		c.keys = make(map[detect.RecordKey]uint32)
	} else if len(c.keys) >= maxConnKeys {
		clear(c.keys) // keeps the table's room: a flood refills it at once
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
	if skip != 0 {
		c.env.stats.Gaps++
		if skip > 0 {
			c.env.stats.GapBytes += uint64(skip)
		}
		c.half[dir].lost()
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
	c.half[dir].feed(c, dir, data)
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
