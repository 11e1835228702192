package sensor

import "github.com/tschsensor/tschsensor/detect"

// appParser is the application protocol above one TCP connection's two byte
// streams: it says where messages start and how long they are (the
// connection's halves frame with it), takes each message, and keeps the
// state of the connection. SMB (smbState) and DCE-RPC over TCP
// (rpcChannel) are the two; a transport is added by implementing it in a
// file of its own and listing its probe in appProbes.
type appParser interface {
	// framing returns the message length at b: n>0 complete length, n==0
	// more header bytes needed, n<0 not a message start.
	framing(b []byte) int
	// start returns the offset of the first message start in b, -1 if none.
	start(b []byte) int
	// message takes one framed message from direction dir.
	message(dir int, msg []byte)
	// partial is offered the head of a message too large to buffer; true
	// means the head was handled and the rest is to be skipped.
	partial(dir int, head []byte, total int) bool
	// maxMessage bounds a buffered message.
	maxMessage() int
	// gap says that data of direction dir was lost.
	gap(dir int)
	// close ends the connection: what is still open is reported.
	close()
}

// appProbe recognises an application protocol from a connection's ports or
// the bytes gathered so far (b: what the last delivery added, with the few
// bytes before it that may begin a header), and opens its parser.
type appProbe struct {
	match func(c *conn, b []byte) bool
	open  func(c *conn) appParser
}

// appProbes lists the protocols a connection may carry, in the order they
// are tried: SMB's ports decide before any content does.
func appProbes() [2]appProbe {
	return [2]appProbe{
		{match: matchSMB, open: openSMB},
		{match: func(_ *conn, b []byte) bool { return rpcStart(b) >= 0 }, open: openRPC},
	}
}

func matchSMB(c *conn, b []byte) bool {
	for _, p := range c.port {
		if p == portSMB || p == portNetBIOS {
			return true
		}
	}
	return smbStart(b) >= 0
}

func openSMB(c *conn) appParser {
	c.env.stats.SMBConnections++
	return newSMBState(c)
}

func openRPC(c *conn) appParser {
	c.env.stats.RPCConnections++
	return newRPCChannel(c, detect.TransportTCP, nil)
}

// appParser for SMB: NBSS framing (direct TCP or port 139).
func (s *smbState) framing(b []byte) int { return nbssFrame(b) }
func (s *smbState) start(b []byte) int   { return smbStart(b) }

// maxMessage: encrypted SMB3 messages can only be authenticated whole, so
// a connection with decryption keys buffers them up to the largest SMB2
// read or write (8 MiB) plus headers.
func (s *smbState) maxMessage() int {
	if s.keyed {
		return max(s.c.env.opt.MaxMessage, maxEncryptedMessage)
	}
	return s.c.env.opt.MaxMessage
}

// appParser for DCE-RPC over TCP; the framing methods are those pipes use.
func (r *rpcChannel) message(dir int, msg []byte) { r.pdu(dir, msg) }

// gap needs nothing of a TCP channel: its half resynchronises on the next
// PDU header, and calls cut by the gap end when their responses come.
func (r *rpcChannel) gap(int) {}
