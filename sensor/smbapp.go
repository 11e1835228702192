package sensor

import "github.com/tschsensor/tschsensor/dissect"

// SMB as a connection's application protocol: direct TCP (445) or NBSS
// (139), both framed by NBSS headers. The state machine is smbState
// (smb.go, smb1.go); this file is what a connection needs to
// pick and frame it.

// matchSMB: SMB's ports, or an NBSS header followed by an SMB protocol id.
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
