package sensor

import (
	"github.com/tschsensor/tschsensor/detect"
	"github.com/tschsensor/tschsensor/dissect"
)

// DCE-RPC over TCP (ncacn_ip_tcp) as a connection's application protocol:
// the channel (rpc.go) parses the PDUs; named pipes frame their byte
// streams with the same functions.

// matchRPC: a plausible DCE-RPC connection-oriented header, on any port.
func matchRPC(_ *conn, b []byte) bool { return rpcStart(b) >= 0 }

func openRPC(c *conn) appParser {
	c.env.stats.RPCConnections++
	return newRPCChannel(c, detect.TransportTCP, nil)
}

// appParser for DCE-RPC over TCP; the framing methods are those pipes use.
func (r *rpcChannel) message(dir int, msg []byte) { r.pdu(dir, msg) }

// gap needs nothing of a TCP channel: its half resynchronises on the next
// PDU header, and calls cut by the gap end when their responses come.
func (r *rpcChannel) gap(int) {}

// rpcFrame frames DCE-RPC PDUs by their frag_length.
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
