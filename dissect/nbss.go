package dissect

import (
	"encoding/binary"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// NetBIOS session service packet types (RFC 1002 4.3).
const (
	NBSSMessage         = 0x00
	NBSSRequest         = 0x81
	NBSSPositive        = 0x82
	NBSSNegative        = 0x83
	NBSSRetarget        = 0x84
	NBSSKeepAlive       = 0x85
	NBSSHeaderLen       = 4
	maxNBSSLength       = 1<<17 - 1
	nbssNameEncodedSize = 32
)

// PeekNBSS reads the 4-byte NBSS header at b. ok is false when the bytes
// cannot be one; length is the payload length after the header.
func PeekNBSS(b []byte) (typ uint8, length int, ok bool) {
	if len(b) < NBSSHeaderLen {
		return 0, 0, false
	}
	typ = b[0]
	switch typ {
	case NBSSMessage:
		// Direct TCP transport (445) uses a 24-bit length (MS-SMB2 2.1); the
		// top byte is zero in NBSS proper, where only bit 0 of flags counts.
		length = int(b[1])<<16 | int(binary.BigEndian.Uint16(b[2:]))
	case NBSSRequest, NBSSPositive, NBSSNegative, NBSSRetarget, NBSSKeepAlive:
		if b[1]&0xfe != 0 {
			return 0, 0, false
		}
		length = int(b[1]&1)<<16 | int(binary.BigEndian.Uint16(b[2:]))
	default:
		return 0, 0, false
	}
	return typ, length, true
}

// NBSSNames decodes a session request payload into the called and calling
// NetBIOS names (first-level encoding, RFC 1001 14.1), trailing spaces and the
// suffix byte removed.
func NBSSNames(payload []byte) (called, calling string, err error) {
	off := 0
	var names [2]string
	for i := range names {
		if len(payload) > off && payload[off] != nbssNameEncodedSize {
			return "", "", errAt("nbss", off, ErrMalformed, "session request name %d: length %d, want %d", i, payload[off], nbssNameEncodedSize)
		}
		if len(payload) < off+1+nbssNameEncodedSize+1 {
			return "", "", errAt("nbss", off, ErrTruncated, "session request name %d needs %d bytes, have %d", i, 1+nbssNameEncodedSize+1, max(len(payload)-off, 0))
		}
		enc := payload[off+1 : off+1+nbssNameEncodedSize]
		var raw [16]byte
		for j := 0; j < 16; j++ {
			hi, lo := enc[2*j]-'A', enc[2*j+1]-'A'
			if hi > 15 || lo > 15 {
				return "", "", errAt("nbss", off+1+2*j, ErrMalformed, "name %d not first-level encoded", i)
			}
			raw[j] = hi<<4 | lo
		}
		n := 15
		for n > 0 && (raw[n-1] == ' ' || raw[n-1] == 0) {
			n--
		}
		names[i] = string(raw[:n])
		off += 1 + nbssNameEncodedSize
		// Scope labels are not used on SMB; skip to the terminating zero.
		for off < len(payload) && payload[off] != 0 {
			off += int(payload[off]) + 1
		}
		if off >= len(payload) {
			return "", "", errAt("nbss", len(payload), ErrTruncated, "name %d: scope runs past the end", i)
		}
		off++
	}
	return names[0], names[1], nil
}

// UTF16String decodes little-endian UTF-16 (odd trailing byte ignored,
// trailing NULs removed, invalid surrogates replaced).
func UTF16String(b []byte) string {
	n := len(b) / 2
	for n > 0 && b[2*n-2] == 0 && b[2*n-1] == 0 {
		n--
	}
	ascii := true
	for i := 0; i < n; i++ {
		if b[2*i+1] != 0 || b[2*i] >= 0x80 {
			ascii = false
			break
		}
	}
	if ascii {
		s := make([]byte, n)
		for i := range s {
			s[i] = b[2*i]
		}
		return string(s)
	}
	// Straight to UTF-8 in one buffer: going through []uint16 and []rune
	// took five times the name's size per call, and a 32,767-unit name
	// may come in every CREATE of a flood.
	out := make([]byte, 0, 3*n)
	for i := 0; i < n; i++ {
		r := rune(binary.LittleEndian.Uint16(b[2*i:]))
		if utf16.IsSurrogate(r) {
			// A high surrogate and a low one make a pair; anything else
			// is replaced, as utf16.Decode does.
			d := unicode.ReplacementChar
			if r < 0xdc00 && i+1 < n {
				if d = utf16.DecodeRune(r, rune(binary.LittleEndian.Uint16(b[2*i+2:]))); d != unicode.ReplacementChar {
					i++
				}
			}
			r = d
		}
		out = utf8.AppendRune(out, r)
	}
	return string(out)
}
