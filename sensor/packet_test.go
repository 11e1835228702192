package sensor

import (
	"encoding/binary"
	"testing"

	"github.com/google/gopacket/layers"
)

// tsoFrame builds an Ethernet/IPv4/TCP frame carrying payload, with the IPv4
// total length set to total (0 for a TSO frame captured on the sender).
func tsoFrame(payload []byte, total uint16) []byte {
	b := make([]byte, 14+20+20+len(payload))
	binary.BigEndian.PutUint16(b[12:], etherIPv4)
	ip := b[14:]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], total)
	ip[8], ip[9] = 64, ipProtoTCP
	copy(ip[12:], []byte{10, 0, 0, 1, 10, 0, 0, 2})
	tcp := ip[20:]
	binary.BigEndian.PutUint16(tcp[0:], 50000)
	binary.BigEndian.PutUint16(tcp[2:], 445)
	tcp[12] = 5 << 4
	copy(tcp[20:], payload)
	return b
}

// TestDecodeTSOFrame: a frame larger than any MTU whose IPv4 total length is
// 0 (segmentation offload seen on the sending host) keeps its whole payload,
// as Wireshark reads it; a total length beyond the frame is clamped too.
func TestDecodeTSOFrame(t *testing.T) {
	payload := make([]byte, 9000)
	for _, total := range []uint16{0, 65535} {
		var f frame
		if r := decodeFrame(tsoFrame(payload, total), layers.LinkTypeEthernet, &f); r != decTCP {
			t.Fatalf("total %d: result %d", total, r)
		}
		if got := len(f.tcp) - 20; got != len(payload) {
			t.Errorf("total %d: %d payload bytes, want %d", total, got, len(payload))
		}
	}
	// A consistent length still bounds the packet (Ethernet padding is not payload).
	fr := append(tsoFrame([]byte("abc"), 43), 0, 0, 0)
	var f frame
	if decodeFrame(fr, layers.LinkTypeEthernet, &f) != decTCP || len(f.tcp) != 23 {
		t.Errorf("padded frame: %d TCP bytes, want 23", len(f.tcp))
	}
}
