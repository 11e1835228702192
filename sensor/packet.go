package sensor

import (
	"encoding/binary"

	"github.com/google/gopacket/layers"
)

// Link types by number. gopacket's LinkType is a uint8, so pcap link type 276
// (LINUX_SLL2) arrives truncated to 20, which no other link type uses.
const (
	linkNull     = 0
	linkEthernet = 1
	linkRaw      = 101
	linkRawAlt1  = 12
	linkRawAlt2  = 14
	linkLoop     = 108
	linkSLL      = 113
	linkSLL2     = 276 & 0xff
	linkIPv4     = 228 & 0xff
	linkIPv6     = 229 & 0xff

	etherIPv4  = 0x0800
	etherIPv6  = 0x86dd
	etherVLAN  = 0x8100
	etherQinQ  = 0x88a8
	etherQinQ2 = 0x9100

	ipProtoTCP = 6
	// maxVLANTags bounds 802.1Q nesting (QinQ and a little more).
	maxVLANTags = 4
)

// frame is a packet decoded down to TCP, aliasing the packet's bytes.
type frame struct {
	vlan     uint16
	v6       bool
	src, dst []byte // 4 or 16 bytes
	tcp      []byte // TCP header and payload
	// fragment is set for IPv4 fragments, which go through defragmentation.
	fragment bool
	ip       []byte // the IPv4 header and payload (fragments only)
}

// decodeResult says what a packet turned out to be.
type decodeResult uint8

const (
	decTCP decodeResult = iota
	decNotTCP
	decMalformed
	decUnsupportedLink
	decIPv6Fragment
)

// decodeFrame parses link, VLAN and IP headers in place.
func decodeFrame(data []byte, link layers.LinkType, f *frame) decodeResult {
	*f = frame{}
	var eth uint16
	switch uint8(link) {
	case linkEthernet:
		if len(data) < 14 {
			return decMalformed
		}
		eth = binary.BigEndian.Uint16(data[12:])
		data = data[14:]
	case linkSLL:
		if len(data) < 16 {
			return decMalformed
		}
		eth = binary.BigEndian.Uint16(data[14:])
		data = data[16:]
	case linkSLL2:
		if len(data) < 20 {
			return decMalformed
		}
		eth = binary.BigEndian.Uint16(data[0:])
		data = data[20:]
	case linkNull, linkLoop:
		if len(data) < 4 {
			return decMalformed
		}
		fam := binary.LittleEndian.Uint32(data)
		if uint8(link) == linkLoop || fam > 0xffff {
			fam = binary.BigEndian.Uint32(data)
		}
		data = data[4:]
		switch fam {
		case 2:
			eth = etherIPv4
		case 10, 23, 24, 28, 30:
			eth = etherIPv6
		default:
			return decNotTCP
		}
	case linkRaw, linkRawAlt1, linkRawAlt2, linkIPv4, linkIPv6:
		if len(data) < 1 {
			return decMalformed
		}
		switch data[0] >> 4 {
		case 4:
			eth = etherIPv4
		case 6:
			eth = etherIPv6
		default:
			return decNotTCP
		}
	default:
		return decUnsupportedLink
	}
	for i := 0; eth == etherVLAN || eth == etherQinQ || eth == etherQinQ2; i++ {
		if len(data) < 4 || i == maxVLANTags {
			return decMalformed
		}
		if f.vlan == 0 {
			f.vlan = binary.BigEndian.Uint16(data) & 0x0fff
		}
		eth = binary.BigEndian.Uint16(data[2:])
		data = data[4:]
	}
	switch eth {
	case etherIPv4:
		return decodeIPv4(data, f)
	case etherIPv6:
		return decodeIPv6(data, f)
	}
	return decNotTCP
}

func decodeIPv4(b []byte, f *frame) decodeResult {
	if len(b) < 20 || b[0]>>4 != 4 {
		return decMalformed
	}
	ihl := int(b[0]&0x0f) * 4
	if ihl < 20 || len(b) < ihl {
		return decMalformed
	}
	total := int(binary.BigEndian.Uint16(b[2:]))
	// TSO frames captured on the sending host carry total length 0 (or a
	// length beyond the frame): take the frame's length, as Wireshark does.
	if total == 0 || total > len(b) {
		total = len(b)
	}
	if total < ihl {
		return decMalformed
	}
	if b[9] != ipProtoTCP {
		return decNotTCP
	}
	f.src, f.dst = b[12:16], b[16:20]
	fl := binary.BigEndian.Uint16(b[6:])
	if fl&0x2000 != 0 || fl&0x1fff != 0 {
		f.fragment = true
		f.ip = b[:total]
		return decTCP
	}
	f.tcp = b[ihl:total]
	return decTCP
}

func decodeIPv6(b []byte, f *frame) decodeResult {
	if len(b) < 40 || b[0]>>4 != 6 {
		return decMalformed
	}
	plen := int(binary.BigEndian.Uint16(b[4:]))
	next := b[6]
	f.v6 = true
	f.src, f.dst = b[8:24], b[24:40]
	rest := b[40:]
	if plen == 0 || plen > len(rest) {
		plen = len(rest) // jumbogram or TSO: trust the frame
	}
	rest = rest[:plen]
	for i := 0; i < 8; i++ {
		switch next {
		case ipProtoTCP:
			f.tcp = rest
			return decTCP
		case 0, 43, 60: // hop-by-hop, routing, destination options
			if len(rest) < 8 {
				return decMalformed
			}
			l := (int(rest[1]) + 1) * 8
			if len(rest) < l {
				return decMalformed
			}
			next, rest = rest[0], rest[l:]
		case 44:
			return decIPv6Fragment
		default:
			return decNotTCP
		}
	}
	return decMalformed
}
