package sensor

import (
	"encoding/binary"
	"net/netip"

	"github.com/google/gopacket"

	"github.com/tschsensor/tschsensor/dissect"
)

// TCP flags as they sit in byte 13 of the header.
const (
	tcpFIN = 0x01
	tcpSYN = 0x02
	tcpRST = 0x04
	tcpACK = 0x10
)

// tcpHead is what the flow table needs of a TCP header: read in place,
// without gopacket's option parsing.
type tcpHead struct {
	sp, dp  uint16
	seq     uint32
	flags   uint8
	payload []byte
}

func parseTCPHead(b []byte, h *tcpHead) bool {
	if len(b) < 20 {
		return false
	}
	off := int(b[12]>>4) * 4
	if off < 20 || off > len(b) {
		return false
	}
	h.sp = binary.BigEndian.Uint16(b[0:])
	h.dp = binary.BigEndian.Uint16(b[2:])
	h.seq = binary.BigEndian.Uint32(b[4:])
	h.flags = b[13]
	h.payload = b[off:]
	return true
}

// flowPending is what a promoted flow's assembler must see before the
// packet that promoted it: the SYNs the table kept instead of a connection
// object, and the first bytes it held while they were too few to decide.
type flowPending struct {
	on     bool
	dir    int // direction of the current packet (0: from endpoint a)
	flags  uint16
	isn    [2]uint32
	pre    [2][flowPrefix]byte
	preLen [2]uint8
	// skipPre is set when the current packet itself starts at the
	// direction's first byte: the held bytes are in it.
	skipPre bool
}

// portVerdict is the verdict a well-known port implies.
func portVerdict(p uint16) verdict {
	switch p {
	case portSMB:
		return verdictSMB
	case portNetBIOS:
		return verdictNBSS
	case portEPM:
		return verdictRPC
	}
	return verdictUnknown
}

func keyAddr(b *[16]byte, v6 bool) netip.Addr {
	if v6 {
		return netip.AddrFrom16(*b)
	}
	return netip.AddrFrom4([4]byte(b[:4]))
}

// portClass says which verdict a flow's ports imply: well-known ports, then
// ports the endpoint mapper handed out (DCE-RPC).
func (w *Worker) portClass(e *flowEntry) verdict {
	if v := portVerdict(e.key.pa); v != verdictUnknown {
		return v
	}
	if v := portVerdict(e.key.pb); v != verdictUnknown {
		return v
	}
	if w.epm.Mapped(keyAddr(&e.key.b, e.key.v6), e.key.pb, w.now) || w.epm.Mapped(keyAddr(&e.key.a, e.key.v6), e.key.pa, w.now) {
		return verdictRPC
	}
	return verdictUnknown
}

func (w *Worker) setVerdict(e *flowEntry, v verdict) {
	w.stats.Flow.Flows[e.v]--
	w.stats.Flow.Flows[v]++
	e.v = v
}

func (w *Worker) evicted(reason string) { w.stats.Evictions[reason]++ }

// gate runs a TCP packet through the flow table. It returns false when the
// packet stops here (ignored, half-open, undecided).
func (w *Worker) gate(th *tcpHead, ts int64) bool {
	t := &w.flows
	d := makeFlowKey(&w.f, th.sp, th.dp, &w.key)
	i := t.lookup(&w.key)
	if i < 0 {
		i = t.insert(&w.key, ts, w.evictFn)
		w.stats.Flow.Flows[verdictUnknown]++
		e := &t.e[i]
		e.gen = w.epm.Gen()
		if w.portClass(e) != verdictUnknown {
			e.flags |= flowPort
		}
	}
	e := &t.e[i]
	if ts > e.last {
		e.last = ts
	}
	if e.flags&flowConn != 0 {
		w.stats.Flow.Packets[e.v]++
		return true
	}
	if e.v == verdictIgnored {
		if g := w.epm.Gen(); g != e.gen {
			// The endpoint mapper learnt a port since: this flow may be
			// one of them, picked up from here as a mid-stream flow.
			e.gen = g
			if w.portClass(e) != verdictUnknown {
				e.flags |= flowPort | flowMid
				e.hunted = 0
				w.setVerdict(e, verdictUnknown)
			}
		}
		if e.v == verdictIgnored {
			w.stats.Flow.Packets[verdictIgnored]++
			if th.flags&(tcpFIN|tcpRST) != 0 {
				e.flags |= flowClosed
			}
			return false
		}
	}
	if th.flags&tcpSYN != 0 {
		if e.flags&flowClosed != 0 && th.flags&tcpACK == 0 {
			// The 4-tuple is reused by a new connection.
			*e = flowEntry{key: e.key, hash: e.hash, last: ts, gen: e.gen, flags: flowUsed | e.flags&(flowPort|flowHadConn)}
			w.stats.Flow.Flows[verdictUnknown]++
		}
		if e.flags&(flowSyn0<<d) == 0 || e.isn[d] != th.seq {
			e.isn[d] = th.seq
			e.preLen[d] = 0
		}
		e.flags |= flowSyn0 << d
		if th.flags&tcpACK != 0 {
			e.flags |= flowSynAck0 << d
		}
	}
	if th.flags&(tcpFIN|tcpRST) != 0 {
		e.flags |= flowClosed
	}
	if len(th.payload) == 0 {
		w.stats.Flow.Packets[e.v]++
		return false
	}
	e.flags |= flowData
	if e.v == verdictUnknown {
		v := w.decide(e, d, th)
		if v == verdictUnknown {
			w.stats.Flow.Packets[verdictUnknown]++
			return false
		}
		w.setVerdict(e, v)
		if v == verdictIgnored {
			w.stats.Flow.Packets[verdictIgnored]++
			e.preLen = [2]uint8{}
			return false
		}
	}
	w.stats.Flow.Packets[e.v]++
	w.promote(e, d, th)
	return true
}

// decide looks at a payload of a flow not decided yet.
func (w *Worker) decide(e *flowEntry, d int, th *tcpHead) verdict {
	if e.flags&(flowSyn0<<d) != 0 && e.flags&flowMid == 0 {
		// The stream's start is known: its first bytes decide.
		off := th.seq - (e.isn[d] + 1)
		if off <= uint32(e.preLen[d]) {
			var buf [flowPrefix]byte
			n := copy(buf[:], e.pre[d][:off])
			n += copy(buf[n:], th.payload)
			v := startVerdict(buf[:n])
			if v == verdictUnknown {
				e.pre[d] = buf
				e.preLen[d] = uint8(n)
			}
			if v == verdictSMB && e.flags&flowPort != 0 && (e.key.pa == portNetBIOS || e.key.pb == portNetBIOS) {
				v = verdictNBSS
			}
			return v
		}
		if int32(off) < 0 {
			return verdictUnknown // before the start: a stray retransmission
		}
		e.hunted++
		if e.hunted <= flowMaxEarly {
			w.stats.anomaly("flow_data_before_start")
			return verdictUnknown
		}
		// The start was lost: take the flow mid-stream.
		e.flags |= flowMid
		e.hunted = 0
	}
	if e.flags&flowPort != 0 {
		return w.portClass(e)
	}
	// Mid-stream on another port: hunt a message start in each payload,
	// for at most HuntLimit bytes.
	if smbStart(th.payload) >= 0 {
		return verdictSMB
	}
	if rpcStart(th.payload) >= 0 {
		return verdictRPC
	}
	e.hunted += uint32(min(len(th.payload), 1<<20))
	if int(e.hunted) > w.opt.HuntLimit {
		return verdictIgnored
	}
	return verdictUnknown
}

// startVerdict decides from a stream's first bytes; unknown means more are
// needed (never more than flowPrefix).
func startVerdict(b []byte) verdict {
	if len(b) == 0 {
		return verdictUnknown
	}
	switch b[0] {
	case 5: // DCE-RPC version 5, minor 0 or 1
		if len(b) < 2 {
			return verdictUnknown
		}
		if b[1] <= 1 {
			return verdictRPC
		}
	case dissect.NBSSMessage:
		if len(b) < 8 {
			return verdictUnknown
		}
		if dissect.ClassifySMB(b[4:]) != dissect.SMBNone {
			return verdictSMB
		}
	case dissect.NBSSRequest, dissect.NBSSPositive, dissect.NBSSNegative, dissect.NBSSRetarget, dissect.NBSSKeepAlive:
		if len(b) < 4 {
			return verdictUnknown
		}
		// Each session packet has a length of its own (RFC 1002 4.3): two
		// encoded names, nothing, an error code, an address and port.
		// Random bulk data rarely fits one.
		_, n, ok := dissect.PeekNBSS(b)
		switch {
		case !ok:
		case b[0] == dissect.NBSSRequest && n >= 68 && n <= 512,
			(b[0] == dissect.NBSSPositive || b[0] == dissect.NBSSKeepAlive) && n == 0,
			b[0] == dissect.NBSSNegative && n == 1, b[0] == dissect.NBSSRetarget && n == 6:
			return verdictNBSS
		}
	}
	return verdictIgnored
}

// promote hands a flow to the assembler from this packet on.
func (w *Worker) promote(e *flowEntry, d int, th *tcpHead) {
	w.rearm = e.flags&flowHadConn != 0
	p := &w.pend
	*p = flowPending{}
	if e.flags&flowMid == 0 && e.flags&(flowSyn0|flowSyn1) != 0 {
		p.on = true
		p.dir = d
		p.flags = e.flags
		p.isn = e.isn
		p.pre = e.pre
		p.preLen = e.preLen
		p.skipPre = th.seq == e.isn[d]+1
	}
	e.flags |= flowConn | flowHadConn
	e.preLen = [2]uint8{}
}

// inject feeds the assembler what the table held back for the flow the
// current packet promoted: SYNs (client first) and held first bytes.
func (w *Worker) inject(net gopacket.Flow, pc *pktCtx) {
	p := &w.pend
	p.on = false
	order := [2]int{0, 1}
	if p.flags&flowSyn1 != 0 && p.flags&flowSynAck1 == 0 {
		order = [2]int{1, 0}
	}
	for _, s := range order {
		if p.flags&(flowSyn0<<s) == 0 {
			continue
		}
		fl := byte(tcpSYN)
		if p.flags&(flowSynAck0<<s) != 0 {
			fl |= tcpACK
		}
		w.synth(net, s, p.isn[s], fl, nil, pc)
	}
	for _, s := range order {
		if p.preLen[s] == 0 || s == p.dir && p.skipPre {
			continue
		}
		w.synth(net, s, p.isn[s]+1, tcpACK, p.pre[s][:p.preLen[s]], pc)
	}
}

// synth assembles a segment sent by endpoint s of the current packet's flow.
func (w *Worker) synth(net gopacket.Flow, s int, seq uint32, flags byte, payload []byte, pc *pktCtx) {
	sp, dp := w.th.sp, w.th.dp
	if s != w.pend.dir {
		net = net.Reverse()
		sp, dp = dp, sp
	}
	b := w.synBuf[:20]
	clear(b)
	binary.BigEndian.PutUint16(b[0:], sp)
	binary.BigEndian.PutUint16(b[2:], dp)
	binary.BigEndian.PutUint32(b[4:], seq)
	b[12] = 5 << 4
	b[13] = flags
	binary.BigEndian.PutUint16(b[14:], 0xffff)
	b = append(b, payload...)
	if err := w.synTCP.DecodeFromBytes(b, gopacket.NilDecodeFeedback); err != nil {
		return
	}
	w.asm.AssembleWithContext(net, &w.synTCP, pc)
}

// connEnded is told by a connection that the assembler let it go: its
// buffers leave the budget, and later payload starts a new connection
// object, mid-stream.
func (w *Worker) connEnded(c *conn) {
	w.connUnlink(c)
	w.release(&c.half[0])
	w.release(&c.half[1])
	if i := w.flows.lookup(&c.key); i >= 0 {
		e := &w.flows.e[i]
		e.flags &^= flowConn
		e.flags |= flowClosed | flowMid
	}
}

// flowIgnore is told by a connection that gave up hunting: its packets stop
// at the table from now on.
func (w *Worker) flowIgnore(k *flowKey) {
	if i := w.flows.lookup(k); i >= 0 {
		e := &w.flows.e[i]
		e.flags &^= flowConn
		if e.v != verdictIgnored {
			w.setVerdict(e, verdictIgnored)
		}
	}
}

// expireFlows ends idle entries, on capture time.
func (w *Worker) expireFlows() {
	w.flows.expire(w.now.UnixNano(), w.opt.IdleTimeout, w.evictFn)
}
