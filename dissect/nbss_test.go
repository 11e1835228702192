package dissect

import (
	"bytes"
	"encoding/hex"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
	"unicode/utf16"
	"unicode/utf8"
	"unsafe"
)

// Wire bytes below are TCP payloads (or the SMB2 message after the 4-byte
// NBSS header) copied with tshark -T fields -e tcp.payload from the shared
// captures named in each comment.
const (
	// B_suricata-verify__smb2-ntlmssp-negotiateflags.pcap frame 193: session request to SCV<20> from DESKTOP-V1FA0UQ<00>
	hexNBSSRequest = `
	8100004420464445444647434143414341434143414341434143414341434143
	41434143410020454545464644454c464545504641434e464744424547454244
	4146464642414100`
	// frame 194: positive session response
	hexNBSSPositive = `
	82000000`
	// A_suricata-verify__dcerpc-smb-ctxid.pcap frame 13: session message carrying an SMB2 TREE_CONNECT response (80 bytes)
	hexNBSSMessage = `
	00000050fe534d42400001000000000003000100190000000000000004000000
	00000000fffe0000010000001100000800740000cc55dae8a82e28301855520a
	ff8c8de7100002003000000000000000ff011f01`
)

// wireHex decodes a hex dump, ignoring white space.
func wireHex(tb testing.TB, s string) []byte {
	tb.Helper()
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		tb.Fatalf("bad test vector: %v", err)
	}
	return b
}

// within reports whether sub lies inside buf's memory (nil and empty
// slices are always within): decoders must alias, never point elsewhere.
func within(buf, sub []byte) bool {
	if len(sub) == 0 {
		return true
	}
	if len(buf) == 0 {
		return false
	}
	b0 := uintptr(unsafe.Pointer(unsafe.SliceData(buf)))
	s0 := uintptr(unsafe.Pointer(unsafe.SliceData(sub)))
	return s0 >= b0 && s0+uintptr(len(sub)) <= b0+uintptr(len(buf))
}

// wantError checks that err is a *Error of layer wrapping sentinel, with an
// offset inside the input.
func wantError(t *testing.T, err error, layer string, sentinel error, inputLen int) *Error {
	t.Helper()
	var de *Error
	if !errors.As(err, &de) {
		t.Fatalf("error %v (%T) is not a *dissect.Error", err, err)
	}
	if de.Layer != layer {
		t.Errorf("layer %q, want %q", de.Layer, layer)
	}
	if !errors.Is(err, sentinel) {
		t.Errorf("error %v does not wrap %v", err, sentinel)
	}
	if de.Offset < 0 || de.Offset > inputLen {
		t.Errorf("offset %d outside input of %d bytes", de.Offset, inputLen)
	}
	return de
}

func TestPeekNBSS(t *testing.T) {
	tests := []struct {
		name   string
		in     []byte
		typ    uint8
		length int
		wantOK bool
	}{
		{"session message", wireHex(t, hexNBSSMessage), NBSSMessage, 80, true},
		{"session request", wireHex(t, hexNBSSRequest), NBSSRequest, 68, true},
		{"positive response", wireHex(t, hexNBSSPositive), NBSSPositive, 0, true},
		// Direct TCP (MS-SMB2 2.1): the 24-bit length of an SMB3 multi-credit READ.
		{"direct tcp 24-bit length", []byte{0x00, 0x01, 0x00, 0x50}, NBSSMessage, 0x10050, true},
		// RFC 1002 4.3.1: only the E (extension) bit of flags may be set.
		{"request with length extension", []byte{0x81, 0x01, 0x00, 0x00}, NBSSRequest, 0x10000, true},
		{"keep-alive", []byte{0x85, 0x00, 0x00, 0x00}, NBSSKeepAlive, 0, true},
		{"request with reserved flags", []byte{0x81, 0x02, 0x00, 0x44}, 0, 0, false},
		{"unknown type", []byte{0x42, 0x00, 0x00, 0x44}, 0, 0, false},
		{"SMB2 magic instead of header", []byte{0xfe, 'S', 'M', 'B'}, 0, 0, false},
		{"three bytes", []byte{0x00, 0x00, 0x00}, 0, 0, false},
		{"empty", nil, 0, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			typ, n, ok := PeekNBSS(tt.in)
			if ok != tt.wantOK || typ != tt.typ || n != tt.length {
				t.Errorf("PeekNBSS = (%#x, %d, %v), want (%#x, %d, %v)", typ, n, ok, tt.typ, tt.length, tt.wantOK)
			}
		})
	}
	// A real message's declared length is exactly what follows the header.
	msg := wireHex(t, hexNBSSMessage)
	if _, n, _ := PeekNBSS(msg); NBSSHeaderLen+n != len(msg) || ClassifySMB(msg[NBSSHeaderLen:]) != SMBKind2 {
		t.Errorf("session message frames %d+%d bytes of %d", NBSSHeaderLen, n, len(msg))
	}
}

func TestNBSSNames(t *testing.T) {
	req := wireHex(t, hexNBSSRequest)
	called, calling, err := NBSSNames(req[NBSSHeaderLen:])
	if err != nil {
		t.Fatal(err)
	}
	if called != "SCV" || calling != "DESKTOP-V1FA0UQ" {
		t.Errorf("names %q, %q; want SCV, DESKTOP-V1FA0UQ", called, calling)
	}

	// Every cut of the payload is an error that says truncated and where.
	payload := req[NBSSHeaderLen:]
	for n := 0; n < len(payload); n++ {
		_, _, err := NBSSNames(payload[:n])
		if err == nil {
			t.Fatalf("cut at %d: no error", n)
		}
		de := wantError(t, err, "nbss", ErrTruncated, n)
		if n > 34 && de.Offset < 34 {
			t.Errorf("cut at %d in the second name reported at offset %d", n, de.Offset)
		}
	}

	// A letter outside 'A'..'P' is not first-level encoding: malformed, at it.
	bad := append([]byte(nil), payload...)
	bad[1+6] = 'Z'
	_, _, err = NBSSNames(bad)
	if de := wantError(t, err, "nbss", ErrMalformed, len(bad)); de.Offset != 7 {
		t.Errorf("bad nibble reported at offset %d, want 7", de.Offset)
	}
	// A length byte other than 32 (a label pointer, say) is malformed.
	bad = append([]byte(nil), payload...)
	bad[34] = 0xc0
	_, _, err = NBSSNames(bad)
	if de := wantError(t, err, "nbss", ErrMalformed, len(bad)); de.Offset != 34 {
		t.Errorf("bad length byte reported at offset %d, want 34", de.Offset)
	}

	// A NetBIOS scope (RFC 1001 14.1) after the first name is skipped.
	scoped := append([]byte(nil), payload[:33]...)
	scoped = append(scoped, 4, 'c', 'o', 'r', 'p', 3, 'l', 'a', 'n', 0)
	scoped = append(scoped, payload[34:]...)
	called, calling, err = NBSSNames(scoped)
	if err != nil || called != "SCV" || calling != "DESKTOP-V1FA0UQ" {
		t.Errorf("with scope: %q, %q, %v", called, calling, err)
	}
}

func TestUTF16String(t *testing.T) {
	tests := []struct {
		in   []byte
		want string
	}{
		{[]byte("a\x00t\x00s\x00v\x00c\x00"), "atsvc"},
		{[]byte("a\x00t\x00\x00\x00\x00\x00"), "at"},           // trailing NULs
		{[]byte("a\x00t\x00s"), "at"},                          // odd trailing byte
		{[]byte("T\x00\xe2\x00c\x00h\x00e\x00"), "T\u00e2che"}, // Latin-1 range
		{[]byte("\x3d\xd8\x00\xde"), "\U0001F600"},             // surrogate pair
		{[]byte("\x3d\xd8x\x00"), "\uFFFDx"},                   // lone high surrogate
		{[]byte("\\\x00\\\x00h\x00\\\x00I\x00P\x00C\x00$\x00"), `\\h\IPC$`},
		{nil, ""},
	}
	for _, tt := range tests {
		if got := UTF16String(tt.in); got != tt.want {
			t.Errorf("UTF16String(% x) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// FuzzNBSS checks PeekNBSS, NBSSNames and UTF16String on arbitrary bytes:
// no panic, bounded lengths, errors that say where, the same answer twice.
func FuzzNBSS(f *testing.F) {
	for _, h := range []string{hexNBSSRequest, hexNBSSPositive, hexNBSSMessage} {
		f.Add(wireHex(f, h))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		orig := bytes.Clone(b)
		typ, n, ok := PeekNBSS(b)
		typ2, n2, ok2 := PeekNBSS(b)
		if typ != typ2 || n != n2 || ok != ok2 {
			t.Fatal("PeekNBSS not deterministic")
		}
		if ok && (n < 0 || n > 1<<24-1) {
			t.Fatalf("length %d out of range", n)
		}
		if !ok && (typ != 0 || n != 0) {
			t.Fatalf("rejected header returned (%d, %d)", typ, n)
		}
		payload := b
		if len(b) >= NBSSHeaderLen {
			payload = b[NBSSHeaderLen:]
		}
		called, calling, err := NBSSNames(payload)
		called2, calling2, err2 := NBSSNames(payload)
		if called != called2 || calling != calling2 || (err == nil) != (err2 == nil) {
			t.Fatal("NBSSNames not deterministic")
		}
		if err != nil {
			var de *Error
			if !errors.As(err, &de) || de.Offset < 0 || de.Offset > len(payload) {
				t.Fatalf("error %v has no offset within %d bytes", err, len(payload))
			}
			if !errors.Is(err, ErrTruncated) && !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v wraps no sentinel", err)
			}
		} else if len(called) > 15 || len(calling) > 15 {
			t.Fatalf("names longer than 15 bytes: %q %q", called, calling)
		}
		s := UTF16String(b)
		if !utf8.ValidString(s) || s != UTF16String(b) {
			t.Fatalf("UTF16String: invalid or unstable %q", s)
		}
		if !bytes.Equal(b, orig) {
			t.Fatal("input modified")
		}
	})
}

// TestUTF16StringMatchesDecode: the direct decoder gives what
// utf16.Decode does, on random units rich in surrogates (paired, lone,
// reversed) and ASCII.
func TestUTF16StringMatchesDecode(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	pick := []uint16{'a', 0x7f, 0x80, 0xe9, 0x30a2, 0xd800, 0xdbff, 0xdc00, 0xdfff, 0xd83d, 0xde00, 0xfffd, 0xffff, 0}
	for range 20000 {
		u := make([]uint16, rnd.IntN(12))
		for i := range u {
			if rnd.IntN(4) == 0 {
				u[i] = uint16(rnd.Uint32())
			} else {
				u[i] = pick[rnd.IntN(len(pick))]
			}
		}
		b := make([]byte, 2*len(u))
		for i, x := range u {
			b[2*i], b[2*i+1] = byte(x), byte(x>>8)
		}
		n := len(u)
		for n > 0 && u[n-1] == 0 {
			n--
		}
		if got, want := UTF16String(b), string(utf16.Decode(u[:n])); got != want {
			t.Fatalf("UTF16String(%04x) = %q, want %q", u, got, want)
		}
	}
}
