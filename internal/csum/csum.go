// Package csum computes the Internet checksum (RFC 1071) of the IPv4 and TCP
// headers the traffic generators (internal/flood, scripts/mirrormix) write,
// which each kept a copy.
package csum

// Add adds b as big-endian 16-bit words (an odd last byte padded with zero)
// to the ones'-complement sum s, folding as it goes so that a 64 KiB
// segment cannot overflow it. Folding early leaves Fold's result unchanged.
func Add(s uint32, b []byte) uint32 {
	for len(b) >= 2 {
		s += uint32(b[0])<<8 | uint32(b[1])
		if s > 0xffff0000 {
			s = s&0xffff + s>>16
		}
		b = b[2:]
	}
	if len(b) == 1 {
		s += uint32(b[0]) << 8
	}
	return s
}

// Fold folds the carries of s back into 16 bits; a checksum field holds
// the complement of the result.
func Fold(s uint32) uint16 {
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return uint16(s)
}
