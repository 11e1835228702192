package sensor

import (
	"encoding/binary"

	"github.com/tschsensor/tschsensor/dissect"
)

// Pipe traffic is DCE-RPC framing carried in SMB messages: an SMB2 WRITE
// request or READ response on a named pipe is not buffered whole; its data
// is handed to the pipe's DCE-RPC framer as the bytes stream in, so the
// size of the SMB message never decides whether its PDUs are seen (a PDU is
// at most 64 KiB; the limits that matter are per fragment and per stub).

// passTarget streams the rest of an SMB message into a pipe's framer: skip
// bytes are dropped first, then left bytes are fed, the rest dropped.
type passTarget struct {
	pipe       *pipeState
	dir        int
	skip, left int
}

func (p *passTarget) take(b []byte) {
	if p.pipe == nil || p.pipe.closed {
		return
	}
	if p.skip > 0 {
		k := min(p.skip, len(b))
		p.skip -= k
		b = b[k:]
	}
	if p.left > 0 && len(b) > 0 {
		k := min(p.left, len(b))
		p.left -= k
		p.pipe.feed(p.dir, b[:k])
	}
}

// stop ends a pass cut short (a gap in the TCP stream): the pipe's framer
// loses sync too.
func (p *passTarget) stop() {
	if p.pipe != nil && !p.pipe.closed {
		p.pipe.lost(p.dir)
	}
	*p = passTarget{}
}

// pipeThrough starts streaming a pipe message whose head is msg (SMB2
// header onward): the data in the head is fed now, the rest as it comes.
func (s *smbState) pipeThrough(dir int, msg []byte, off, n int, f *smbFile, pdir int) bool {
	return s.pipeThroughAt(dissect.SMB2HeaderLen, dir, msg, off, n, f, pdir)
}

// pipeThroughAt is pipeThrough for a header of hdrLen bytes (SMB1 or SMB2),
// before which no data may start.
func (s *smbState) pipeThroughAt(hdrLen, dir int, msg []byte, off, n int, f *smbFile, pdir int) bool {
	if off < hdrLen || n < 0 {
		return false
	}
	var avail []byte
	if off < len(msg) {
		avail = msg[off:min(len(msg), off+n)]
	}
	s.c.half[dir].pass = passTarget{pipe: f.pipe, dir: pdir, skip: max(0, off-len(msg)), left: n - len(avail)}
	if len(avail) > 0 {
		f.pipe.feed(pdir, avail)
	}
	return true
}

// partialIOCTL streams a large FSCTL_PIPE_TRANSCEIVE: the request's input
// to the pipe's client side, the response's output to its server side. The
// fixed part of the body is in the head (MS-SMB2 2.2.31, 2.2.32).
func (s *smbState) partialIOCTL(dir int, msg []byte, h *dissect.SMB2Header) bool {
	const body = dissect.SMB2HeaderLen
	if len(msg) < body+48 {
		return false
	}
	le := binary.LittleEndian
	b := msg[body:]
	if le.Uint32(b[4:]) != dissect.FSCTLPipeTransceive {
		return false
	}
	if !h.Response() {
		if le.Uint16(b) != 57 {
			return false
		}
		if s.c.client < 0 {
			s.c.setClient(dir)
		}
		fid := dissect.FileID(b[8:24])
		off, n := int(le.Uint32(b[24:])), int(le.Uint32(b[28:]))
		f := s.files[fileKey{h.SessionID, fid}]
		if f == nil || f.pipe == nil {
			return false
		}
		s.addPending(h.MessageID, &smbReq{cmd: h.Command, file: fid, treeID: h.TreeID})
		return s.pipeThrough(dir, msg, off, n, f, s.c.client)
	}
	if le.Uint16(b) != 49 || h.Status != 0 && h.Status != dissect.StatusBufferOverflow || s.c.client < 0 {
		return false
	}
	req := s.pending[h.MessageID]
	if req == nil {
		return false
	}
	f := s.files[fileKey{h.SessionID, req.file}]
	if f == nil || f.pipe == nil {
		return false
	}
	delete(s.pending, h.MessageID)
	off, n := int(le.Uint32(b[32:])), int(le.Uint32(b[36:]))
	return s.pipeThrough(dir, msg, off, n, f, 1-s.c.client)
}
