// Package flood builds hostile captures that try to blind a passive SMB and
// DCE-RPC sensor: connection floods, unfinished large messages, unanswered
// requests. Each shape is a deterministic function of its size, so tests
// run small versions in memory and pcaps/gen/flood writes full-size files.
//
// Flood traffic uses 10.64.0.0/11 (clients) and 10.99.0.1 (server); a real
// capture spliced in keeps its own addresses and its relative timing.
package flood

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/google/gopacket"

	"github.com/tschsensor/tschsensor/internal/csum"
)

// Packet is one Ethernet frame and its capture time.
type Packet struct {
	CI   gopacket.CaptureInfo
	Data []byte
}

// Sink receives frames in capture order. data is reused after the call.
type Sink func(ci gopacket.CaptureInfo, data []byte) error

// Kinds of flood.
const (
	// SYN: n SYNs to port 445 from distinct clients (half-open).
	SYN = "syn"
	// Handshake1: n handshakes to 445, each followed by one byte.
	Handshake1 = "handshake1"
	// OutOfOrder: n handshakes to 445, each followed by one segment
	// 1000 bytes ahead of the stream's start.
	OutOfOrder = "ooo"
	// HandshakeHeader: n handshakes to 445, each followed by the first 8
	// bytes of an SMB2 message (NBSS header and protocol id), never more:
	// flows a sensor must take for SMB.
	HandshakeHeader = "hsheader"
	// BigMessage: n connections to 445, each announcing a 1 MiB SMB2
	// SESSION_SETUP and sending all of it but the last 100 bytes,
	// interleaved.
	BigMessage = "bigmsg"
	// RPCRequests: one DCE-RPC channel bound to ITaskSchedulerService on
	// a dynamic port carrying n requests that are never answered.
	RPCRequests = "rpcreq"
	// RPCRuns: as RPCRequests, but SchRpcRun requests (a valid stub):
	// calls that would change the server, which a sensor must report one
	// by one.
	RPCRuns = "rpcrun"
	// RPCJunk: as RPCRuns, but with an empty stub, which no server
	// accepts: calls that change nothing.
	RPCJunk = "rpcjunk"
	// Creates: one SMB2 connection carrying n CREATE requests (one per
	// segment) that are never answered.
	Creates = "creates"
)

// Kinds lists the shapes Generate knows (a new slice each call, so no
// caller can change what another sees).
func Kinds() []string {
	return append([]string{SYN, Handshake1, OutOfOrder, HandshakeHeader, BigMessage, RPCRequests, RPCRuns, RPCJunk, Creates}, variantKinds...)
}

// Start is the capture time of the first flood frame.
func Start() time.Time { return time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC) }

// Spacing between flood frames: 1 µs (a million frames per second).
const Spacing = time.Microsecond

// gen writes flood frames, merging the spliced capture in by time.
type gen struct {
	sink   Sink
	t      time.Time
	splice []Packet
	at     time.Time // capture time the splice starts at
	next   int
	buf    []byte
	err    error
	vlan   uint16 // 802.1Q tag of flood frames (0: none)
}

// Generate writes n units of flood kind to sink; splice (a real capture) is
// merged in, its first frame placed at the flood's middle, its relative
// timing kept.
func Generate(kind string, n int, splice []Packet, sink Sink) error {
	g := &gen{sink: sink, t: Start(), splice: splice}
	var span time.Duration
	switch kind {
	case SYN:
		span = time.Duration(n) * Spacing
	case Handshake1, OutOfOrder, HandshakeHeader:
		span = time.Duration(3*n) * Spacing
	case BigMessage:
		span = time.Duration(n*(2+messageSize/segment)) * Spacing
	case RPCRequests, RPCRuns, RPCJunk:
		span = time.Duration(n/requestsPerSegment+4) * Spacing
	case Creates:
		span = time.Duration(n/createsPerSegment+4) * Spacing
	default:
		// A variant: its frames are counted by a dry run.
		frames := 0
		dry := &gen{sink: func(gopacket.CaptureInfo, []byte) error { frames++; return nil }}
		if !dry.variant(kind, n) {
			return fmt.Errorf("flood: unknown kind %q (want one of %v)", kind, Kinds())
		}
		span = time.Duration(frames) * Spacing
	}
	if len(splice) > 0 {
		g.at = Start().Add(span / 2)
	}
	switch kind {
	case SYN:
		for i := range n {
			c := client(i)
			g.tcp(c, server(), sport(i), 445, 1000, 0, flagSYN, nil)
		}
	case Handshake1, OutOfOrder, HandshakeHeader:
		for i := range n {
			c, p := client(i), sport(i)
			g.tcp(c, server(), p, 445, 1000, 0, flagSYN, nil)
			g.tcp(server(), c, 445, p, 5000, 1001, flagSYN|flagACK, nil)
			switch kind {
			case Handshake1:
				g.tcp(c, server(), p, 445, 1001, 5001, flagACK|flagPSH, []byte{0})
			case HandshakeHeader:
				g.tcp(c, server(), p, 445, 1001, 5001, flagACK|flagPSH, []byte("\x00\x00\x00\x40\xfeSMB"))
			default:
				g.tcp(c, server(), p, 445, 2001, 5001, flagACK|flagPSH, make([]byte, 100))
			}
		}
	case BigMessage:
		g.bigMessages(n)
	case RPCRequests:
		g.rpcRequests(n, 0, nil)
	case RPCRuns:
		g.rpcRequests(n, 12, runStub)
	case RPCJunk:
		g.rpcRequests(n, 12, nil)
	case Creates:
		g.creates(n)
	default:
		g.variant(kind, n)
	}
	for g.next < len(g.splice) && g.err == nil {
		g.emitSplice()
	}
	return g.err
}

// server is the flood's server address, 10.99.0.1.
func server() [4]byte { return [4]byte{10, 99, 0, 1} }

// client and sport spread flood connections over 64 ports of each of many
// addresses in 10.64.0.0/10 (never the server's 10.99.0.1).
func client(i int) [4]byte {
	j := i >> 6
	return [4]byte{10, byte(64 + j>>16&31), byte(j >> 8), byte(j)}
}
func sport(i int) uint16 { return uint16(1024 + i&63*900) }

const (
	flagFIN = 0x01
	flagSYN = 0x02
	flagPSH = 0x08
	flagACK = 0x10
)

func (g *gen) spliceTime(i int) time.Time {
	return g.at.Add(g.splice[i].CI.Timestamp.Sub(g.splice[0].CI.Timestamp))
}

func (g *gen) emitSplice() {
	p := g.splice[g.next]
	ci := p.CI
	ci.Timestamp = g.spliceTime(g.next)
	if g.err == nil {
		g.err = g.sink(ci, p.Data)
	}
	g.next++
}

// tcp emits one Ethernet/IPv4/TCP frame with valid checksums (802.1Q
// tagged when g.vlan is set).
func (g *gen) tcp(src, dst [4]byte, sp, dp uint16, seq, ack uint32, flags byte, payload []byte) {
	g.frame(src[:], dst[:], sp, dp, seq, ack, flags, payload)
}

// frame emits one Ethernet/IPv4 or IPv6 (16-byte addresses)/TCP frame with
// valid checksums.
func (g *gen) frame(src, dst []byte, sp, dp uint16, seq, ack uint32, flags byte, payload []byte) {
	if g.err != nil {
		return
	}
	for g.next < len(g.splice) && !g.spliceTime(g.next).After(g.t) {
		g.emitSplice()
	}
	eth := 14
	if g.vlan != 0 {
		eth = 18
	}
	iph := 20
	if len(src) == 16 {
		iph = 40
	}
	n := eth + iph + 20 + len(payload)
	if cap(g.buf) < n {
		g.buf = make([]byte, n, max(n, 2048))
	}
	b := g.buf[:n]
	clear(b[:eth+iph+20])
	copy(b[0:6], []byte{2, 0, 0, 0, 0, 2})
	copy(b[6:12], []byte{2, 0, 0, 0, 0, 1})
	etype := uint16(0x0800)
	if iph == 40 {
		etype = 0x86dd
	}
	if g.vlan != 0 {
		binary.BigEndian.PutUint16(b[12:], 0x8100)
		binary.BigEndian.PutUint16(b[14:], g.vlan&0xfff)
	}
	binary.BigEndian.PutUint16(b[eth-2:], etype)
	ip := b[eth : eth+iph]
	var s uint32
	if iph == 20 {
		ip[0] = 0x45
		binary.BigEndian.PutUint16(ip[2:], uint16(min(20+20+len(payload), 0xffff)))
		ip[6] = 0x40
		ip[8] = 64
		ip[9] = 6
		copy(ip[12:], src)
		copy(ip[16:], dst)
		binary.BigEndian.PutUint16(ip[10:], ^csum.Fold(csum.Add(0, ip)))
		s = csum.Add(0, ip[12:20])
	} else {
		ip[0] = 0x60
		binary.BigEndian.PutUint16(ip[4:], uint16(min(20+len(payload), 0xffff)))
		ip[6] = 6
		ip[7] = 64
		copy(ip[8:], src)
		copy(ip[24:], dst)
		s = csum.Add(0, ip[8:40])
	}
	t := b[eth+iph : eth+iph+20]
	binary.BigEndian.PutUint16(t[0:], sp)
	binary.BigEndian.PutUint16(t[2:], dp)
	binary.BigEndian.PutUint32(t[4:], seq)
	binary.BigEndian.PutUint32(t[8:], ack)
	t[12] = 5 << 4
	t[13] = flags
	binary.BigEndian.PutUint16(t[14:], 65535)
	copy(b[eth+iph+20:], payload)
	// TCP checksum over the pseudo-header and the segment.
	s += 6 + uint32(20+len(payload))
	binary.BigEndian.PutUint16(t[16:], ^csum.Fold(csum.Add(s, b[eth+iph:])))
	ci := gopacket.CaptureInfo{Timestamp: g.t, CaptureLength: n, Length: n}
	g.t = g.t.Add(Spacing)
	g.err = g.sink(ci, b)
}
