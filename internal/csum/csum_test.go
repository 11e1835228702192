package csum

import (
	"bytes"
	"encoding/binary"
	"testing"
)

// TestRFC1071Example: the worked example of RFC 1071 section 3 (bytes
// 00 01 f2 03 f4 f5 f6 f7 sum to 0x2ddf0, folded 0xddf2).
func TestRFC1071Example(t *testing.T) {
	b := []byte{0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7}
	if s := Add(0, b); Fold(s) != 0xddf2 {
		t.Fatalf("sum %#x folds to %#x, want 0xddf2", s, Fold(s))
	}
	// An odd length pads the last byte with zero.
	if got, want := Fold(Add(0, b[:7])), Fold(Add(0, append(b[:7:7], 0))); got != want {
		t.Fatalf("odd length: %#x, want %#x", got, want)
	}
}

// TestLongRunVerifies: 256 KiB of 0xff bytes would overflow an unfolded
// 32-bit sum (131072 words of 0xffff); with its checksum stored, the data
// sums to 0xffff, as a receiver checks it.
func TestLongRunVerifies(t *testing.T) {
	const n = 1 << 18
	b := append(bytes.Repeat([]byte{0xff}, n), 0, 0, 0x12, 0x34)
	binary.BigEndian.PutUint16(b[n:], ^Fold(Add(0, b)))
	if got := Fold(Add(0, b)); got != 0xffff {
		t.Fatalf("data with its checksum folds to %#x, want 0xffff", got)
	}
}
