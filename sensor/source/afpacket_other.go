//go:build !linux

package source

import (
	"errors"
	"time"
)

var errNoAFPacket = errors.New("live capture needs Linux (AF_PACKET)")

// OpenRing fails: live capture needs Linux.
func OpenRing(c AFPacketConfig) (Ring, error) {
	return nil, errNoAFPacket
}

// WaitRings fails: live capture needs Linux.
func WaitRings(socks []Ring, timeout time.Duration) error { return errNoAFPacket }
