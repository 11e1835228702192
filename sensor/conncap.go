package sensor

import (
	"encoding/binary"
	"net/netip"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/reassembly"
)

// Connections the reassembler holds are bounded too (MaxConnections, by
// default the connections a quarter of the memory budget pays for). A new
// connection is always admitted: the flow table only lets through flows
// whose first bytes or ports say SMB, NBSS or DCE-RPC, and refusing one
// would blind the sensor to the next attack. Past the bound the oldest
// connection that has not carried one SMB message or DCE-RPC PDU is ended
// instead (a flood of handshakes with a plausible header), its flow ignored
// from then on; connections that carried messages are left to the idle
// timeout, shortened while over the bound.

// connShare is the part of a worker's budget connection objects may take.
const connShare = 4

// Eviction reason of connections.
const evictConnNoMessage = "connection_without_messages"

// connLink is a connection's place in the worker's list, oldest first.
type connLink struct {
	prev, next *conn
	// seq is the sequence number of the last segment offered per
	// direction: a reset there ends the half (it is at or before the
	// reassembler's next expected byte).
	seq      [2]uint32
	carried  bool // one SMB message or DCE-RPC PDU was handled
	evicting bool
	listed   bool
}

func (w *Worker) connAdded(c *conn) {
	c.lru.listed = true
	c.lru.prev = w.connTail
	if w.connTail != nil {
		w.connTail.lru.next = c
	} else {
		w.connHead = c
	}
	w.connTail = c
	if w.active > w.opt.MaxConnections {
		w.stats.anomaly("too_many_connections")
		w.pressure = true
		w.connOver = true
	}
}

func (w *Worker) connUnlink(c *conn) {
	if !c.lru.listed {
		return
	}
	l := &c.lru
	if l.prev != nil {
		l.prev.lru.next = l.next
	} else {
		w.connHead = l.next
	}
	if l.next != nil {
		l.next.lru.prev = l.prev
	} else {
		w.connTail = l.prev
	}
	l.prev, l.next, l.listed = nil, nil, false
}

// evictConns ends connections without messages, oldest first, while the
// worker holds more than MaxConnections. It runs between packets: the
// assembler is not reentrant.
func (w *Worker) evictConns(pc *pktCtx) {
	w.connOver = false
	for w.active > w.opt.MaxConnections {
		var victim *conn
		n := 0
		for c := w.connHead; c != nil && n < 64; c, n = c.lru.next, n+1 {
			if !c.lru.carried && c.key != w.key {
				victim = c
				break
			}
		}
		if victim == nil {
			return
		}
		w.evictConn(victim, pc)
	}
}

// evictConn resets both halves of c in the assembler, which then lets the
// connection go, and ignores its flow.
func (w *Worker) evictConn(c *conn, pc *pktCtx) {
	w.stats.Evictions[evictConnNoMessage]++
	w.connUnlink(c)
	c.lru.evicting = true
	c.proto = protoIgnored
	key := c.key
	a, b := c.addr[0], c.addr[1]
	for d := range 2 {
		if d == 1 {
			a, b = b, a
		}
		var buf [20]byte
		binary.BigEndian.PutUint16(buf[0:], c.port[d])
		binary.BigEndian.PutUint16(buf[2:], c.port[1-d])
		binary.BigEndian.PutUint32(buf[4:], c.lru.seq[d])
		buf[12] = 5 << 4
		buf[13] = tcpRST
		if err := w.synTCP.DecodeFromBytes(buf[:], gopacket.NilDecodeFeedback); err != nil {
			continue
		}
		w.asm.AssembleWithContext(addrFlow(a, b), &w.synTCP, pc)
	}
	w.flowIgnore(&key)
}

func addrFlow(a, b netip.Addr) gopacket.Flow {
	if a.Is4() {
		a4, b4 := a.As4(), b.As4()
		return gopacket.NewFlow(layers.EndpointIPv4, a4[:], b4[:])
	}
	a16, b16 := a.As16(), b.As16()
	return gopacket.NewFlow(layers.EndpointIPv6, a16[:], b16[:])
}

// dirIndex is the connection's direction index of an assembler direction:
// 0 from the first packet's sender.
func dirIndex(d reassembly.TCPFlowDirection) int {
	if d == reassembly.TCPDirServerToClient {
		return 1
	}
	return 0
}
