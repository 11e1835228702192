package flood

import (
	"encoding/binary"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/google/gopacket"
)

// TestKindsNotShared: what Kinds returns is the caller's own; changing it
// changes nothing for the next caller, and every kind it names generates.
func TestKindsNotShared(t *testing.T) {
	k := Kinds()
	k[0] = "changed"
	if Kinds()[0] != SYN {
		t.Fatalf("Kinds() after a caller changed its copy: %v", Kinds())
	}
	for _, kind := range Kinds() {
		frames := 0
		first := true
		err := Generate(kind, 3, nil, func(ci gopacket.CaptureInfo, data []byte) error {
			if first && !ci.Timestamp.Equal(Start()) {
				t.Errorf("%s: first frame at %v, want %v", kind, ci.Timestamp, Start())
			}
			first = false
			frames++
			return nil
		})
		if err != nil || frames == 0 {
			t.Errorf("%s: %d frames, %v", kind, frames, err)
		}
	}
	if err := Generate("nope", 1, nil, nil); err == nil || !strings.Contains(err.Error(), Creates) {
		t.Errorf("unknown kind: %v, want the kinds listed", err)
	}
}

// TestBindUUIDs: the interface UUIDs the bind carries are the text GUIDs in
// their wire form (first three fields little-endian).
func TestBindUUIDs(t *testing.T) {
	for text, wire := range map[string]string{
		"86d35949-83c9-4044-b424-db363231fd0c": uuidTsch,
		"8a885d04-1ceb-11c9-9fe8-08002b104860": uuidNDR,
	} {
		b, err := hex.DecodeString(strings.ReplaceAll(text, "-", ""))
		if err != nil {
			t.Fatal(err)
		}
		binary.LittleEndian.PutUint32(b, binary.BigEndian.Uint32(b))
		binary.LittleEndian.PutUint16(b[4:], binary.BigEndian.Uint16(b[4:]))
		binary.LittleEndian.PutUint16(b[6:], binary.BigEndian.Uint16(b[6:]))
		if string(b) != wire {
			t.Errorf("%s: wire form %x, want %x", text, wire, b)
		}
	}
}
