package flood

import (
	"encoding/binary"
)

// Sizes of the message shapes.
const (
	// messageSize is the NBSS length of each unfinished message: with its
	// 4-byte header just under a sensor's default 1 MiB message bound, so
	// that a sensor without a total bound buffers all of it.
	messageSize = 1<<20 - 4 - 1000
	// unsent is how much of each message never comes.
	unsent  = 100
	segment = 1448

	// One request per segment, as most clients send them.
	requestsPerSegment = 1
	createsPerSegment  = 1
)

// smb2Header appends an SMB2 request header.
func smb2Header(b []byte, cmd uint16, msgID uint64) []byte {
	h := make([]byte, 64)
	copy(h, "\xfeSMB")
	binary.LittleEndian.PutUint16(h[4:], 64)
	binary.LittleEndian.PutUint16(h[12:], cmd)
	binary.LittleEndian.PutUint16(h[14:], 1)
	binary.LittleEndian.PutUint64(h[24:], msgID)
	binary.LittleEndian.PutUint32(h[36:], 1) // tree id
	binary.LittleEndian.PutUint64(h[40:], 1) // session id
	return append(b, h...)
}

func nbss(b []byte, n int) []byte {
	return append(b, 0, byte(n>>16), byte(n>>8), byte(n))
}

// handshake opens a connection from c:p to the server's port dp; it
// returns the client's and the server's next sequence numbers.
func (g *gen) handshake(c [4]byte, p, dp uint16) (uint32, uint32) {
	g.tcp(c, server(), p, dp, 1000, 0, flagSYN, nil)
	g.tcp(server(), c, dp, p, 5000, 1001, flagSYN|flagACK, nil)
	g.tcp(c, server(), p, dp, 1001, 5001, flagACK, nil)
	return 1001, 5001
}

// bigMessages: n connections each send all but the last bytes of a large
// SMB2 SESSION_SETUP (a message a sensor must have whole to read the
// authentication in it), interleaved segment by segment.
func (g *gen) bigMessages(n int) {
	msg := bigSessionSetup()
	seq := make([]uint32, n)
	for i := range n {
		seq[i], _ = g.handshake(client(i), sport(i), 445)
	}
	for off := 0; off < len(msg); off += segment {
		end := min(off+segment, len(msg))
		for i := range n {
			g.tcp(client(i), server(), sport(i), 445, seq[i], 5001, flagACK|flagPSH, msg[off:end])
			seq[i] += uint32(end - off)
		}
	}
}

// bigSessionSetup is an SMB2 SESSION_SETUP announcing messageSize bytes
// (NBSS header included), all but the last unsent of them.
func bigSessionSetup() []byte {
	msg := nbss(nil, messageSize)
	msg = smb2Header(msg, 1, 1) // SESSION_SETUP
	body := make([]byte, 24)
	binary.LittleEndian.PutUint16(body[0:], 25)
	binary.LittleEndian.PutUint16(body[12:], 64+24)
	binary.LittleEndian.PutUint16(body[14:], 0xffff)
	msg = append(msg, body...)
	for len(msg) < 4+messageSize-unsent {
		msg = append(msg, byte(len(msg)))
	}
	return msg
}

// ITaskSchedulerService and NDR, as they appear in a bind (GUIDs in their
// little-endian wire form).
// (86d35949-83c9-4044-b424-db363231fd0c and
// 8a885d04-1ceb-11c9-9fe8-08002b104860).
const (
	uuidTsch = "\x49\x59\xd3\x86\xc9\x83\x44\x40\xb4\x24\xdb\x36\x32\x31\xfd\x0c"
	uuidNDR  = "\x04\x5d\x88\x8a\xeb\x1c\xc9\x11\x9f\xe8\x08\x00\x2b\x10\x48\x60"
)

// rpcHeader appends a DCE-RPC connection-oriented header; the caller
// fixes the fragment length.
func rpcHeader(b []byte, ptype byte, callID uint32) []byte {
	h := make([]byte, 16)
	h[0], h[1], h[2], h[3] = 5, 0, ptype, 0x03
	h[4] = 0x10 // little-endian, ASCII, IEEE
	binary.LittleEndian.PutUint32(h[12:], callID)
	return append(b, h...)
}

func setFragLen(pdu []byte) []byte {
	binary.LittleEndian.PutUint16(pdu[8:], uint16(len(pdu)))
	return pdu
}

// runStub is a SchRpcRun request (MS-TSCH 3.2.5.4.13) in NDR: path
// "\\x", no arguments, flags 0, session 0, no user.
var runStub = []byte{
	3, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, '\\', 0, 'x', 0, 0, 0, 0, 0, // path: max count, offset, count, UTF-16, pad
	0, 0, 0, 0, // cArgs
	0, 0, 0, 0, // pArgs: null
	0, 0, 0, 0, // flags
	0, 0, 0, 0, // sessionId
	0, 0, 0, 0, // user: null
}

// RunStub returns a valid SchRpcRun request stub (NDR) for tests.
func RunStub() []byte { return append([]byte(nil), runStub...) }

// rpcRequests: a channel to a dynamic port, bound to ITaskSchedulerService,
// then n requests of opnum carrying stub, never answered.
func (g *gen) rpcRequests(n int, opnum uint16, stub []byte) {
	c, p, dp := [4]byte{10, 66, 250, 1}, uint16(50000), uint16(49667)
	cs, ss := g.handshake(c, p, dp)
	bind, ack := bindPDUs("49667\x00")
	g.tcp(c, server(), p, dp, cs, ss, flagACK|flagPSH, bind)
	cs += uint32(len(bind))
	g.tcp(server(), c, dp, p, ss, cs, flagACK|flagPSH, ack)
	ss += uint32(len(ack))
	var seg []byte
	for i := range n {
		req := rpcHeader(nil, 0, uint32(2+i))
		req = binary.LittleEndian.AppendUint32(req, uint32(len(stub))) // alloc hint
		req = append(req, 0, 0, byte(opnum), byte(opnum>>8))           // context 0, opnum
		seg = append(seg, setFragLen(append(req, stub...))...)
		if (i+1)%requestsPerSegment == 0 || i == n-1 {
			g.tcp(c, server(), p, dp, cs, ss, flagACK|flagPSH, seg)
			cs += uint32(len(seg))
			seg = seg[:0]
		}
	}
}

// smb2Create is a CREATE request opening name for reading.
func smb2Create(msgID uint64, name []byte) []byte {
	m := smb2Header(nil, 5, msgID)
	body := make([]byte, 56)
	binary.LittleEndian.PutUint16(body[0:], 57)
	binary.LittleEndian.PutUint32(body[24:], 0x00120089) // read access
	binary.LittleEndian.PutUint32(body[36:], 1)          // open
	binary.LittleEndian.PutUint16(body[44:], 64+56)
	binary.LittleEndian.PutUint16(body[46:], uint16(len(name)))
	return append(append(m, body...), name...)
}

// creates: one SMB2 connection with n CREATE requests never answered.
func (g *gen) creates(n int) {
	c, p := [4]byte{10, 66, 251, 1}, uint16(50001)
	cs, ss := g.handshake(c, p, 445)
	name := []byte{'a', 0, '.', 0, 't', 0, 'x', 0, 't', 0}
	var seg []byte
	for i := range n {
		seg = append(seg, withNBSS(smb2Create(uint64(10+i), name))...)
		if (i+1)%createsPerSegment == 0 || i == n-1 {
			g.tcp(c, server(), p, 445, cs, ss, flagACK|flagPSH, seg)
			cs += uint32(len(seg))
			seg = seg[:0]
		}
	}
}
