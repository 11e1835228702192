package dissect

import (
	"bytes"
	"encoding/binary"
	"unicode/utf16"
	"unicode/utf8"
)

// NTLMSSP message decoding (MS-NLMP 2.2.1). The three messages carry a fixed
// header of (length, maxlength, offset) field descriptors pointing into a
// payload; every descriptor is checked against the message length before use.

const layerNTLMSSP = "ntlmssp"

// ntlmSignature opens every NTLMSSP message.
var ntlmSignature = []byte("NTLMSSP\x00")

// NTLM message types (MS-NLMP 2.2.1).
const (
	NTLMNegotiate    uint32 = 1
	NTLMChallenge    uint32 = 2
	NTLMAuthenticate uint32 = 3
)

// NTLM negotiate flags (MS-NLMP 2.2.2.5) the sensor and the key derivation
// look at.
const (
	NTLMFlagUnicode                 uint32 = 0x00000001
	NTLMFlagOEM                     uint32 = 0x00000002
	NTLMFlagRequestTarget           uint32 = 0x00000004
	NTLMFlagSign                    uint32 = 0x00000010
	NTLMFlagSeal                    uint32 = 0x00000020
	NTLMFlagDatagram                uint32 = 0x00000040
	NTLMFlagLMKey                   uint32 = 0x00000080
	NTLMFlagNTLM                    uint32 = 0x00000200
	NTLMFlagAnonymous               uint32 = 0x00000800
	NTLMFlagOEMDomainSupplied       uint32 = 0x00001000
	NTLMFlagOEMWorkstationSupplied  uint32 = 0x00002000
	NTLMFlagAlwaysSign              uint32 = 0x00008000
	NTLMFlagTargetTypeDomain        uint32 = 0x00010000
	NTLMFlagTargetTypeServer        uint32 = 0x00020000
	NTLMFlagExtendedSessionSecurity uint32 = 0x00080000
	NTLMFlagIdentify                uint32 = 0x00100000
	NTLMFlagRequestNonNTSessionKey  uint32 = 0x00400000
	NTLMFlagTargetInfo              uint32 = 0x00800000
	NTLMFlagVersion                 uint32 = 0x02000000
	NTLMFlag128                     uint32 = 0x20000000
	NTLMFlagKeyExch                 uint32 = 0x40000000
	NTLMFlag56                      uint32 = 0x80000000
)

// Fixed header sizes (MS-NLMP 2.2.1.1-2.2.1.3).
const (
	ntlmAuthenticateFixedLen   = 64 // through NegotiateFlags
	ntlmAuthenticateWithMICLen = 88 // + Version(8) + MIC(16)
	ntlmChallengeFixedLen      = 48 // through TargetInfoFields
	ntlmNegotiateFixedLen      = 16 // through NegotiateFlags
	ntlmNegotiateWithFieldsLen = 32 // + Domain and Workstation fields
)

// AV pair identifiers (MS-NLMP 2.2.2.1) read from CHALLENGE TargetInfo.
const (
	avEOL             = 0
	avNbComputerName  = 1
	avNbDomainName    = 2
	avDNSComputerName = 3
	avDNSDomainName   = 4
	// MaxNTLMAVPairs bounds the AV pair walk: real servers send fewer than a
	// dozen, so more is hostile or garbage.
	MaxNTLMAVPairs = 64
)

// NTLMMessage is one decoded NTLMSSP message. Byte-slice fields alias the
// input; strings are copies.
type NTLMMessage struct {
	Type  uint32 // NTLMNegotiate, NTLMChallenge or NTLMAuthenticate
	Flags uint32
	// Domain, User and Workstation come from AUTHENTICATE (UTF-16LE or OEM per
	// Flags); NEGOTIATE fills Domain and Workstation when it supplies them.
	Domain, User, Workstation string
	ServerChallenge           [8]byte // CHALLENGE
	TargetName                string  // CHALLENGE
	TargetInfo                []byte  // CHALLENGE AV pairs, raw
	// Names found in the CHALLENGE AV pairs.
	NbComputer, NbDomain, DNSComputer, DNSDomain string
	// AUTHENTICATE responses and the key-exchange blob.
	LMResponse, NTResponse, EncryptedRandomSessionKey []byte
	MIC                                               []byte // AUTHENTICATE, when the header has room for it
	Version                                           [8]byte
	// Anonymous marks an AUTHENTICATE with an empty user name and an empty or
	// single-zero-byte LM response (MS-NLMP 3.2.5.1.2).
	Anonymous bool
	// Raw is the whole message as parsed (aliases the input); the MIC and
	// session verification need it.
	Raw []byte
}

// NTLMv2 reports whether the NT response is an NTLMv2 one: NTLMv1 responses
// are exactly 24 bytes.
func (m *NTLMMessage) NTLMv2() bool { return len(m.NTResponse) > 24 }

// ParseNTLMSSP decodes the NTLMSSP message at the start of b. Trailing bytes
// after the payload are ignored (SPNEGO fallbacks hand over the rest of the
// blob).
func ParseNTLMSSP(b []byte) (*NTLMMessage, error) {
	if len(b) < 12 {
		return nil, errAt(layerNTLMSSP, 0, ErrTruncated, "message of %d bytes", len(b))
	}
	if !bytes.Equal(b[:8], ntlmSignature) {
		return nil, errAt(layerNTLMSSP, 0, ErrMalformed, "no NTLMSSP signature")
	}
	m := &NTLMMessage{Type: binary.LittleEndian.Uint32(b[8:]), Raw: b}
	var err error
	switch m.Type {
	case NTLMNegotiate:
		err = m.parseNegotiate(b)
	case NTLMChallenge:
		err = m.parseChallenge(b)
	case NTLMAuthenticate:
		err = m.parseAuthenticate(b)
	default:
		return nil, errAt(layerNTLMSSP, 8, ErrMalformed, "message type %d", m.Type)
	}
	if err != nil {
		return nil, err
	}
	return m, nil
}

// ntlmField resolves the (len, maxlen, offset) descriptor at off. A zero
// length yields nil whatever the offset says: some stacks leave it garbage.
func ntlmField(b []byte, off int, name string) ([]byte, error) {
	if off+8 > len(b) {
		return nil, errAt(layerNTLMSSP, off, ErrTruncated, "%s descriptor", name)
	}
	n := uint64(binary.LittleEndian.Uint16(b[off:]))
	at := uint64(binary.LittleEndian.Uint32(b[off+4:]))
	if n == 0 {
		return nil, nil
	}
	if at+n > uint64(len(b)) {
		return nil, errAt(layerNTLMSSP, off, ErrTruncated, "%s at %d+%d past message end %d", name, at, n, len(b))
	}
	return b[at : at+n : at+n], nil
}

// ntlmFieldOffset returns the payload offset a non-empty descriptor points
// at, or ok false.
func ntlmFieldOffset(b []byte, off int) (uint32, bool) {
	if off+8 > len(b) || binary.LittleEndian.Uint16(b[off:]) == 0 {
		return 0, false
	}
	return binary.LittleEndian.Uint32(b[off+4:]), true
}

func (m *NTLMMessage) parseNegotiate(b []byte) error {
	if len(b) < ntlmNegotiateFixedLen {
		return errAt(layerNTLMSSP, len(b), ErrTruncated, "NEGOTIATE header")
	}
	m.Flags = binary.LittleEndian.Uint32(b[12:])
	// Early NEGOTIATE messages stop after the flags.
	if len(b) < ntlmNegotiateWithFieldsLen {
		return nil
	}
	if m.Flags&NTLMFlagOEMDomainSupplied != 0 {
		d, err := ntlmField(b, 16, "DomainName")
		if err != nil {
			return err
		}
		m.Domain = oemString(d)
	}
	if m.Flags&NTLMFlagOEMWorkstationSupplied != 0 {
		w, err := ntlmField(b, 24, "Workstation")
		if err != nil {
			return err
		}
		m.Workstation = oemString(w)
	}
	if m.Flags&NTLMFlagVersion != 0 && len(b) >= 40 {
		copy(m.Version[:], b[32:40])
	}
	return nil
}

func (m *NTLMMessage) parseChallenge(b []byte) error {
	if len(b) < 32 {
		return errAt(layerNTLMSSP, len(b), ErrTruncated, "CHALLENGE header")
	}
	m.Flags = binary.LittleEndian.Uint32(b[20:])
	copy(m.ServerChallenge[:], b[24:32])
	tn, err := ntlmField(b, 12, "TargetName")
	if err != nil {
		return err
	}
	m.TargetName = m.decodeString(tn)
	// NTLMv1-era servers end the header at the reserved field.
	if len(b) < ntlmChallengeFixedLen {
		return nil
	}
	ti, err := ntlmField(b, 40, "TargetInfo")
	if err != nil {
		return err
	}
	m.TargetInfo = ti
	if m.Flags&NTLMFlagVersion != 0 && len(b) >= 56 {
		if p, ok := ntlmFieldOffset(b, 40); !ok || p >= 56 {
			copy(m.Version[:], b[48:56])
		}
	}
	return m.parseAVPairs(ti)
}

// parseAVPairs walks MS-NLMP 2.2.2.1 AV pairs and keeps the four names.
func (m *NTLMMessage) parseAVPairs(ti []byte) error {
	off := 0
	for i := 0; off+4 <= len(ti); i++ {
		if i >= MaxNTLMAVPairs {
			return errAt(layerNTLMSSP, off, ErrLimit, "more than %d AV pairs", MaxNTLMAVPairs)
		}
		id := binary.LittleEndian.Uint16(ti[off:])
		n := int(binary.LittleEndian.Uint16(ti[off+2:]))
		if id == avEOL {
			return nil
		}
		if off+4+n > len(ti) {
			return errAt(layerNTLMSSP, off, ErrTruncated, "AV pair %d of %d bytes", id, n)
		}
		v := ti[off+4 : off+4+n]
		switch id {
		case avNbComputerName:
			m.NbComputer = utf16String(v)
		case avNbDomainName:
			m.NbDomain = utf16String(v)
		case avDNSComputerName:
			m.DNSComputer = utf16String(v)
		case avDNSDomainName:
			m.DNSDomain = utf16String(v)
		}
		off += 4 + n
	}
	return nil
}

func (m *NTLMMessage) parseAuthenticate(b []byte) error {
	if len(b) < ntlmAuthenticateFixedLen {
		return errAt(layerNTLMSSP, len(b), ErrTruncated, "AUTHENTICATE header")
	}
	m.Flags = binary.LittleEndian.Uint32(b[60:])
	var err error
	if m.LMResponse, err = ntlmField(b, 12, "LmChallengeResponse"); err != nil {
		return err
	}
	if m.NTResponse, err = ntlmField(b, 20, "NtChallengeResponse"); err != nil {
		return err
	}
	var dom, user, ws []byte
	if dom, err = ntlmField(b, 28, "DomainName"); err != nil {
		return err
	}
	if user, err = ntlmField(b, 36, "UserName"); err != nil {
		return err
	}
	if ws, err = ntlmField(b, 44, "Workstation"); err != nil {
		return err
	}
	if m.EncryptedRandomSessionKey, err = ntlmField(b, 52, "EncryptedRandomSessionKey"); err != nil {
		return err
	}
	m.Domain, m.User, m.Workstation = m.decodeString(dom), m.decodeString(user), m.decodeString(ws)
	// Version and MIC are present only when the payload starts after them;
	// the lowest payload offset tells (MS-NLMP 2.2.1.3 leaves it implicit).
	payload := uint32(len(b))
	for _, d := range []int{12, 20, 28, 36, 44, 52} {
		if p, ok := ntlmFieldOffset(b, d); ok && p < payload {
			payload = p
		}
	}
	if payload >= 72 && len(b) >= 72 {
		copy(m.Version[:], b[64:72])
	}
	if payload >= ntlmAuthenticateWithMICLen && len(b) >= ntlmAuthenticateWithMICLen {
		m.MIC = b[72:88:88]
	}
	m.Anonymous = len(user) == 0 && (len(m.LMResponse) == 0 || (len(m.LMResponse) == 1 && m.LMResponse[0] == 0))
	return nil
}

func (m *NTLMMessage) decodeString(b []byte) string {
	if m.Flags&NTLMFlagUnicode != 0 {
		return utf16String(b)
	}
	return oemString(b)
}

// utf16String decodes UTF-16LE; an odd trailing byte is dropped and bad
// surrogates become U+FFFD, so the result is always valid UTF-8.
func utf16String(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	u := make([]uint16, len(b)/2)
	for i := range u {
		u[i] = binary.LittleEndian.Uint16(b[2*i:])
	}
	return string(utf16.Decode(u))
}

// oemString reads an OEM string as Latin-1: the code page is not on the
// wire, and this keeps ASCII exact and the result valid UTF-8.
func oemString(b []byte) string {
	ascii := true
	for _, c := range b {
		if c >= utf8.RuneSelf {
			ascii = false
			break
		}
	}
	if ascii {
		return string(b)
	}
	r := make([]rune, len(b))
	for i, c := range b {
		r[i] = rune(c)
	}
	return string(r)
}
