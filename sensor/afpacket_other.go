//go:build !linux

package sensor

import (
	"errors"
	"time"
)

var errNoAFPacket = errors.New("live capture needs Linux (AF_PACKET)")

func openRing(c AFPacketConfig) (ringSource, error) {
	return nil, errNoAFPacket
}

func waitRings(socks []ringSource, timeout time.Duration) error { return errNoAFPacket }
