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

// ipv4TCP returns an IPv4/TCP packet (no link header) with payload p.
func ipv4TCP(p []byte) []byte { return tsoFrame(p, uint16(40+len(p)))[14:] }

// ipv6TCP returns an IPv6 packet with a hop-by-hop header before TCP.
func ipv6TCP(p []byte) []byte {
	b := make([]byte, 40+8+20+len(p))
	b[0] = 0x60
	binary.BigEndian.PutUint16(b[4:], uint16(8+20+len(p)))
	b[6], b[7] = 0, 64 // next header: hop-by-hop
	b[8+15], b[24+15] = 1, 2
	hbh := b[40:]
	hbh[0], hbh[1] = ipProtoTCP, 0
	tcp := b[48:]
	tcp[12] = 5 << 4
	copy(tcp[20:], p)
	return b
}

// TestDecodeLinkTypes: every supported link layer, VLAN and QinQ, IPv6
// with an extension header, lead to the same TCP bytes.
func TestDecodeLinkTypes(t *testing.T) {
	payload := []byte("\x00\x00\x00\x04\xfeSMB")
	v4, v6 := ipv4TCP(payload), ipv6TCP(payload)
	cat := func(parts ...[]byte) []byte {
		var b []byte
		for _, p := range parts {
			b = append(b, p...)
		}
		return b
	}
	eth := func(typ uint16) []byte {
		h := make([]byte, 14)
		binary.BigEndian.PutUint16(h[12:], typ)
		return h
	}
	tag := func(id, next uint16) []byte {
		h := make([]byte, 4)
		binary.BigEndian.PutUint16(h, id)
		binary.BigEndian.PutUint16(h[2:], next)
		return h
	}
	sll := make([]byte, 16)
	binary.BigEndian.PutUint16(sll[14:], etherIPv4)
	sll2 := make([]byte, 20)
	binary.BigEndian.PutUint16(sll2[0:], etherIPv6)
	null := []byte{2, 0, 0, 0}  // AF_INET, host order (little-endian writer)
	loop := []byte{0, 0, 0, 30} // AF_INET6 (Darwin), network order
	cases := []struct {
		name string
		link layers.LinkType
		pkt  []byte
		vlan uint16
		v6   bool
	}{
		{"ethernet", layers.LinkTypeEthernet, cat(eth(etherIPv4), v4), 0, false},
		{"802.1Q", layers.LinkTypeEthernet, cat(eth(etherVLAN), tag(42, etherIPv4), v4), 42, false},
		{"QinQ", layers.LinkTypeEthernet, cat(eth(etherQinQ), tag(100, etherVLAN), tag(200, etherIPv6), v6), 100, true},
		{"SLL", layers.LinkTypeLinuxSLL, cat(sll, v4), 0, false},
		{"SLL2", layers.LinkType(linkSLL2), cat(sll2, v6), 0, true},
		{"null", layers.LinkTypeNull, cat(null, v4), 0, false},
		{"loop", layers.LinkTypeLoop, cat(loop, v6), 0, true},
		{"raw", layers.LinkTypeRaw, v4, 0, false},
		{"raw IPv6 (229)", layers.LinkType(linkIPv6), v6, 0, true},
	}
	for _, c := range cases {
		var f frame
		if r := decodeFrame(c.pkt, c.link, &f); r != decTCP {
			t.Errorf("%s: result %d, want TCP", c.name, r)
			continue
		}
		if string(f.tcp[20:]) != string(payload) || f.vlan != c.vlan || f.v6 != c.v6 {
			t.Errorf("%s: payload %q vlan %d v6 %v", c.name, f.tcp[20:], f.vlan, f.v6)
		}
	}
	var f frame
	if r := decodeFrame(cat(eth(etherVLAN), tag(1, etherVLAN), tag(2, etherVLAN), tag(3, etherVLAN), tag(4, etherVLAN), tag(5, etherIPv4), v4), layers.LinkTypeEthernet, &f); r != decMalformed {
		t.Errorf("five VLAN tags: result %d, want malformed (bound %d)", r, maxVLANTags)
	}
}
