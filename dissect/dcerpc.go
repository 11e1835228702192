package dissect

import (
	"encoding/binary"
	"fmt"
)

// DCE-RPC connection-oriented PDU types (C706 12.6.4, MS-RPCE 2.2.2).
const (
	PTypeRequest        = 0
	PTypePing           = 1
	PTypeResponse       = 2
	PTypeFault          = 3
	PTypeBind           = 11
	PTypeBindAck        = 12
	PTypeBindNak        = 13
	PTypeAlterContext   = 14
	PTypeAlterCtxResp   = 15
	PTypeAuth3          = 16
	PTypeShutdown       = 17
	PTypeCoCancel       = 18
	PTypeOrphaned       = 19
	maxKnownPType       = 19
	DCERPCHeaderLen     = 16
	secTrailerLen       = 8
	PFCFirstFrag        = 0x01
	PFCLastFrag         = 0x02
	PFCObjectUUID       = 0x80
	AuthLevelNone       = 1
	AuthLevelConnect    = 2
	AuthLevelCall       = 3
	AuthLevelPkt        = 4
	AuthLevelIntegrity  = 5
	AuthLevelPrivacy    = 6
	AuthTypeNone        = 0
	AuthTypeSPNEGO      = 9
	AuthTypeNTLMSSP     = 10
	AuthTypeKerberos    = 16
	AuthTypeNetlogon    = 68
	maxContextsPerBind  = 64
	minDCERPCFragLength = DCERPCHeaderLen
)

// Syntax is a negotiated transfer syntax.
type Syntax uint8

const (
	SyntaxUnknown Syntax = iota
	SyntaxNDR
	SyntaxNDR64
)

func (s Syntax) String() string {
	switch s {
	case SyntaxNDR:
		return "NDR"
	case SyntaxNDR64:
		return "NDR64"
	}
	return ""
}

// Well-known transfer syntaxes.
const (
	uuidNDR    = "8a885d04-1ceb-11c9-9fe8-08002b104860"
	uuidNDR64  = "71710533-beba-4937-8319-b5dbef9ccc36"
	btfnPrefix = "6cb71c2c-9812-4540-"
)

// SyntaxByUUID names a transfer syntax.
func SyntaxByUUID(u string) Syntax {
	switch u {
	case uuidNDR:
		return SyntaxNDR
	case uuidNDR64:
		return SyntaxNDR64
	}
	return SyntaxUnknown
}

// IsBindTimeFeature reports whether a transfer syntax UUID is the bind time
// feature negotiation marker (MS-RPCE 3.3.1.5.3), not a real syntax.
func IsBindTimeFeature(u string) bool { return len(u) == 36 && u[:19] == btfnPrefix }

// DCERPCHeader is the common header of a connection-oriented PDU.
type DCERPCHeader struct {
	Major, Minor uint8
	PType        uint8
	Flags        uint8
	DRep         [4]byte
	FragLen      uint16
	AuthLen      uint16
	CallID       uint32
}

// Order returns the byte order the PDU's data representation selects.
func (h *DCERPCHeader) Order() binary.ByteOrder {
	if h.DRep[0]&0x10 != 0 {
		return binary.LittleEndian
	}
	return binary.BigEndian
}

// PeekDCERPC reads a PDU header at the start of b. It returns ok=false when b
// does not start with something that can be a connection-oriented PDU; short
// input returns ok=false with need>0.
func PeekDCERPC(b []byte, h *DCERPCHeader) (ok bool, need int) {
	if len(b) < DCERPCHeaderLen {
		if len(b) > 0 && b[0] != 5 || len(b) > 1 && b[1] > 1 || len(b) > 2 && b[2] > maxKnownPType {
			return false, 0
		}
		return false, DCERPCHeaderLen - len(b)
	}
	if b[0] != 5 || b[1] > 1 || b[2] > maxKnownPType {
		return false, 0
	}
	// Integer representation must be one of the two defined values.
	if b[4]&0xef != 0 || b[5] > 3 {
		return false, 0
	}
	h.Major, h.Minor, h.PType, h.Flags = b[0], b[1], b[2], b[3]
	copy(h.DRep[:], b[4:8])
	o := h.Order()
	h.FragLen = o.Uint16(b[8:])
	h.AuthLen = o.Uint16(b[10:])
	h.CallID = o.Uint32(b[12:])
	if int(h.FragLen) < DCERPCHeaderLen || h.AuthLen != 0 && int(h.AuthLen)+secTrailerLen+DCERPCHeaderLen > int(h.FragLen) {
		return false, 0
	}
	return true, 0
}

// AuthTrailer is the sec_trailer and auth value at the end of a PDU.
type AuthTrailer struct {
	Type, Level, PadLen uint8
	ContextID           uint32
	Value               []byte // aliases the PDU
	// Offset is where the sec_trailer starts within the PDU.
	Offset int
}

// ParseAuthTrailer locates the auth verifier of pdu (exactly FragLen bytes).
// It returns false when the PDU carries none.
func ParseAuthTrailer(pdu []byte, h *DCERPCHeader, t *AuthTrailer) (bool, error) {
	*t = AuthTrailer{}
	if h.AuthLen == 0 {
		return false, nil
	}
	off := len(pdu) - int(h.AuthLen) - secTrailerLen
	if off < DCERPCHeaderLen {
		return false, errAt("dcerpc", 10, ErrMalformed, "auth_length %d exceeds fragment %d", h.AuthLen, len(pdu))
	}
	t.Type, t.Level, t.PadLen = pdu[off], pdu[off+1], pdu[off+2]
	t.ContextID = h.Order().Uint32(pdu[off+4:])
	t.Value = pdu[off+secTrailerLen:]
	t.Offset = off
	return true, nil
}

// RequestPDU is the body of a request PDU.
type RequestPDU struct {
	AllocHint uint32
	ContextID uint16
	Opnum     uint16
	// Stub is the stub data without auth padding when it is known (cleartext),
	// aliasing the PDU. For sealed PDUs it still includes the padding, which is
	// encrypted with it; StubEnd is its end offset within the PDU.
	Stub    []byte
	StubOff int
}

// ResponsePDU is the body of a response or fault PDU.
type ResponsePDU struct {
	AllocHint   uint32
	ContextID   uint16
	CancelCount uint8
	Status      uint32 // fault only
	Stub        []byte
	StubOff     int
}

// bodyEnd returns where the stub ends: before the auth padding and trailer.
func bodyEnd(pdu []byte, h *DCERPCHeader, t *AuthTrailer, keepPad bool) int {
	if h.AuthLen == 0 {
		return len(pdu)
	}
	end := t.Offset
	if !keepPad {
		end -= int(t.PadLen)
	}
	return end
}

// ParseRequest decodes a request PDU (pdu is exactly FragLen bytes).
func ParseRequest(pdu []byte, h *DCERPCHeader, t *AuthTrailer, keepPad bool, r *RequestPDU) error {
	*r = RequestPDU{}
	off := DCERPCHeaderLen + 8
	if h.Flags&PFCObjectUUID != 0 {
		off += 16
	}
	if len(pdu) < off {
		return errAt("dcerpc", len(pdu), ErrTruncated, "request header needs %d bytes", off)
	}
	o := h.Order()
	r.AllocHint = o.Uint32(pdu[16:])
	r.ContextID = o.Uint16(pdu[20:])
	r.Opnum = o.Uint16(pdu[22:])
	end := bodyEnd(pdu, h, t, keepPad)
	if end < off || end > len(pdu) {
		// end > len(pdu) only when t belongs to another PDU: refuse it
		// rather than slice beyond the input.
		return errAt("dcerpc", off, ErrMalformed, "auth padding %d overlaps request header", t.PadLen)
	}
	r.Stub, r.StubOff = pdu[off:end], off
	return nil
}

// ParseResponse decodes a response or fault PDU.
func ParseResponse(pdu []byte, h *DCERPCHeader, t *AuthTrailer, keepPad bool, r *ResponsePDU) error {
	*r = ResponsePDU{}
	off := DCERPCHeaderLen + 8
	if len(pdu) < off {
		return errAt("dcerpc", len(pdu), ErrTruncated, "response header needs %d bytes", off)
	}
	o := h.Order()
	r.AllocHint = o.Uint32(pdu[16:])
	r.ContextID = o.Uint16(pdu[20:])
	r.CancelCount = pdu[22]
	if h.PType == PTypeFault {
		if len(pdu) < off+4 {
			return errAt("dcerpc", len(pdu), ErrTruncated, "fault status")
		}
		r.Status = o.Uint32(pdu[24:])
		return nil
	}
	end := bodyEnd(pdu, h, t, keepPad)
	if end < off || end > len(pdu) {
		// end > len(pdu) only when t belongs to another PDU: refuse it
		// rather than slice beyond the input.
		return errAt("dcerpc", off, ErrMalformed, "auth padding %d overlaps response header", t.PadLen)
	}
	r.Stub, r.StubOff = pdu[off:end], off
	return nil
}

// ContextElem is one presentation context of a bind or alter_context.
type ContextElem struct {
	ID            uint16
	AbstractUUID  string
	AbstractMajor uint16
	AbstractMinor uint16
	Syntaxes      []string // transfer syntax UUIDs offered, in order
}

// ContextResult is one result of a bind_ack or alter_context_resp.
type ContextResult struct {
	Result uint16 // 0 acceptance, 1 user rejection, 2 provider rejection, 3 negotiate_ack
	Reason uint16
	Syntax string
}

// ParseBind decodes the presentation context list of a bind or
// alter_context PDU, appending to ctxs (which it returns).
func ParseBind(pdu []byte, h *DCERPCHeader, ctxs []ContextElem) ([]ContextElem, error) {
	if len(pdu) < 28 {
		return ctxs, errAt("dcerpc", len(pdu), ErrTruncated, "bind header")
	}
	o := h.Order()
	n := int(pdu[24])
	if n > maxContextsPerBind {
		return ctxs, errAt("dcerpc", 24, ErrLimit, "%d contexts (>%d)", n, maxContextsPerBind)
	}
	off := 28
	for i := 0; i < n; i++ {
		if len(pdu) < off+24 {
			return ctxs, errAt("dcerpc", off, ErrTruncated, "context element %d", i)
		}
		var c ContextElem
		c.ID = o.Uint16(pdu[off:])
		nts := int(pdu[off+2])
		c.AbstractUUID = FormatUUID(pdu[off+4:off+20], o)
		c.AbstractMajor = o.Uint16(pdu[off+20:])
		c.AbstractMinor = o.Uint16(pdu[off+22:])
		off += 24
		if len(pdu) < off+20*nts {
			return ctxs, errAt("dcerpc", off, ErrTruncated, "context %d: %d transfer syntaxes", c.ID, nts)
		}
		for j := 0; j < nts; j++ {
			c.Syntaxes = append(c.Syntaxes, FormatUUID(pdu[off:off+16], o))
			off += 20
		}
		ctxs = append(ctxs, c)
	}
	return ctxs, nil
}

// BindAckSecAddr returns the secondary address of a bind_ack: the server's
// port spec ("\PIPE\atsvc" on named pipes, "49671" on TCP), NUL removed.
func BindAckSecAddr(pdu []byte, h *DCERPCHeader) string {
	if len(pdu) < 26 {
		return ""
	}
	n := int(h.Order().Uint16(pdu[24:]))
	if n == 0 || 26+n > len(pdu) {
		return ""
	}
	b := pdu[26 : 26+n]
	for len(b) > 0 && b[len(b)-1] == 0 {
		b = b[:len(b)-1]
	}
	for _, c := range b {
		if c < 0x20 || c > 0x7e {
			return ""
		}
	}
	return string(b)
}

// ParseBindAck decodes the result list of a bind_ack or alter_context_resp.
func ParseBindAck(pdu []byte, h *DCERPCHeader, res []ContextResult) ([]ContextResult, error) {
	if len(pdu) < 26 {
		return res, errAt("dcerpc", len(pdu), ErrTruncated, "bind_ack header")
	}
	o := h.Order()
	secLen := int(o.Uint16(pdu[24:]))
	off := 26 + secLen
	off = (off + 3) &^ 3
	if len(pdu) < off+4 {
		return res, errAt("dcerpc", min(off, len(pdu)), ErrTruncated, "bind_ack result list at %d (sec_addr %d)", off, secLen)
	}
	n := int(pdu[off])
	if n > maxContextsPerBind {
		return res, errAt("dcerpc", off, ErrLimit, "%d results (>%d)", n, maxContextsPerBind)
	}
	off += 4
	for i := 0; i < n; i++ {
		if len(pdu) < off+24 {
			return res, errAt("dcerpc", off, ErrTruncated, "result %d", i)
		}
		res = append(res, ContextResult{
			Result: o.Uint16(pdu[off:]),
			Reason: o.Uint16(pdu[off+2:]),
			Syntax: FormatUUID(pdu[off+4:off+20], o),
		})
		off += 24
	}
	return res, nil
}

const hexDigits = "0123456789abcdef"

// FormatUUID renders a wire UUID whose first three fields are in byte order o.
func FormatUUID(b []byte, o binary.ByteOrder) string {
	if len(b) < 16 {
		return ""
	}
	var raw [16]byte
	binary.BigEndian.PutUint32(raw[0:], o.Uint32(b[0:]))
	binary.BigEndian.PutUint16(raw[4:], o.Uint16(b[4:]))
	binary.BigEndian.PutUint16(raw[6:], o.Uint16(b[6:]))
	copy(raw[8:], b[8:16])
	var s [36]byte
	j := 0
	for i, c := range raw {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			s[j] = '-'
			j++
		}
		s[j], s[j+1] = hexDigits[c>>4], hexDigits[c&0xf]
		j += 2
	}
	return string(s[:])
}

// PTypeName names a PDU type for stats and errors.
func PTypeName(p uint8) string {
	names := [...]string{"request", "ping", "response", "fault", "working", "nocall", "reject", "ack",
		"cl_cancel", "fack", "cancel_ack", "bind", "bind_ack", "bind_nak", "alter_context",
		"alter_context_resp", "auth3", "shutdown", "co_cancel", "orphaned"}
	if int(p) < len(names) {
		return names[p]
	}
	return fmt.Sprintf("ptype_%d", p)
}

// AuthTypeName names an RPC authentication service.
func AuthTypeName(t uint8) string {
	switch t {
	case AuthTypeNone:
		return "none"
	case AuthTypeSPNEGO:
		return "SPNEGO"
	case AuthTypeNTLMSSP:
		return "NTLMSSP"
	case AuthTypeKerberos:
		return "Kerberos"
	case AuthTypeNetlogon:
		return "Netlogon"
	}
	return fmt.Sprintf("authn_%d", t)
}

// AuthLevelName names an RPC authentication level.
func AuthLevelName(l uint8) string {
	switch l {
	case AuthLevelNone:
		return "none"
	case AuthLevelConnect:
		return "connect"
	case AuthLevelCall:
		return "call"
	case AuthLevelPkt:
		return "packet"
	case AuthLevelIntegrity:
		return "integrity"
	case AuthLevelPrivacy:
		return "privacy"
	}
	return fmt.Sprintf("level_%d", l)
}
