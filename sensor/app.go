package sensor

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
		{match: matchRPC, open: openRPC},
	}
}
