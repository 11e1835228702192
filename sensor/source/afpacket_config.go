package source

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"golang.org/x/net/bpf"
)

// Defaults of AFPacketConfig. The ring is the only buffer between the wire
// and the workers: it absorbs bursts while a worker is busy, so it is sized
// in megabytes, not packets.
const (
	// DefaultBlockSize is the size of one ring block (a multiple of the
	// page size); the kernel fills a block with packets and hands it over
	// whole.
	DefaultBlockSize = 1 << 20
	// DefaultNumBlocks blocks make a 64 MiB ring per socket.
	DefaultNumBlocks = 64
	// DefaultFrameSize only sets tp_frame_nr: TPACKET_V3 packs packets of
	// any size into blocks.
	DefaultFrameSize = 2048
	// DefaultBlockTimeout hands a partly filled block over after this long,
	// so that a quiet link still delivers its packets promptly.
	DefaultBlockTimeout = 50 * time.Millisecond
	// DefaultSnapLen keeps whole packets (GRO/TSO frames included).
	DefaultSnapLen = 262144
	// DefaultPollTimeout bounds how long a worker sleeps in poll before it
	// looks at its stop flag and publishes its counters.
	DefaultPollTimeout = 100 * time.Millisecond
)

// EtherTypes and the IP protocol number the ring's VLAN handling and the
// default filter test.
const (
	ethIPv4  = 0x0800
	ethIPv6  = 0x86dd
	ethDot1Q = 0x8100
	ethQinQ  = 0x88a8
	ethQinQ2 = 0x9100
	protoTCP = 6
)

// Ring is what a live worker reads: an AF_PACKET ring, or in tests a
// capture file sharded the way the kernel's fanout would. Next returns a
// packet valid until the next call; ok is false when the ring is empty.
type Ring interface {
	Next() (data []byte, ci gopacket.CaptureInfo, ok bool)
	LinkType() layers.LinkType
	Iface() string
	Stats() (KernelStats, error)
	Close() error
}

// tpacketAlignment is TPACKET_ALIGNMENT: frames start on 16 bytes;
// minFrameSize leaves room for the 48-byte tpacket3_hdr and some data.
const (
	tpacketAlignment = 16
	minFrameSize     = 64
)

// AFPacketConfig configures one capture socket.
type AFPacketConfig struct {
	Iface        string
	BlockSize    int
	NumBlocks    int
	FrameSize    int
	BlockTimeout time.Duration
	// SnapLen bounds the bytes kept of each packet (the filter's return
	// value; the kernel cuts the rest).
	SnapLen int
	// Promisc puts the interface in promiscuous mode for the socket's
	// lifetime (a packet membership, undone by the kernel at close).
	Promisc bool
	// Filter is a classic BPF program; nil installs DefaultFilter. A filter
	// must return the snap length for accepted packets.
	Filter []bpf.RawInstruction
	// Fanout joins the socket to FanoutGroup with PACKET_FANOUT_HASH, so
	// that the kernel spreads flows over the group's sockets, both
	// directions of a flow on the same socket.
	Fanout      bool
	FanoutGroup uint16
}

func (c *AFPacketConfig) setDefaults() {
	if c.BlockSize <= 0 {
		c.BlockSize = DefaultBlockSize
	}
	if c.NumBlocks <= 0 {
		c.NumBlocks = DefaultNumBlocks
	}
	if c.FrameSize <= 0 {
		c.FrameSize = DefaultFrameSize
	}
	if c.BlockTimeout <= 0 {
		c.BlockTimeout = DefaultBlockTimeout
	}
	if c.SnapLen <= 0 {
		c.SnapLen = DefaultSnapLen
	}
}

// validate checks the ring geometry before the kernel does, so that the
// error names the flag rather than EINVAL.
func (c *AFPacketConfig) validate() error {
	page := os.Getpagesize()
	switch {
	case c.BlockSize%page != 0:
		return fmt.Errorf("block size %d is not a multiple of the page size %d", c.BlockSize, page)
	case c.FrameSize < minFrameSize || c.FrameSize%tpacketAlignment != 0:
		return fmt.Errorf("frame size %d must be a multiple of %d and at least %d", c.FrameSize, tpacketAlignment, minFrameSize)
	case c.FrameSize > c.BlockSize:
		return fmt.Errorf("frame size %d exceeds block size %d", c.FrameSize, c.BlockSize)
	case uint64(c.BlockSize)*uint64(c.NumBlocks) > 1<<34:
		return fmt.Errorf("ring of %d blocks of %d bytes is larger than 16 GiB", c.NumBlocks, c.BlockSize)
	case c.SnapLen > 1<<18:
		return fmt.Errorf("snap length %d exceeds %d", c.SnapLen, 1<<18)
	}
	return nil
}

// KernelStats are a socket's counters from PACKET_STATISTICS, cumulated
// since the socket was opened.
type KernelStats struct {
	// Packets counts packets the filter accepted, dropped ones included.
	Packets uint64 `json:"packets"`
	// Drops counts packets lost because the ring was full.
	Drops uint64 `json:"drops"`
	// Freezes counts times the ring filled up (the queue froze).
	Freezes uint64 `json:"freezes"`
}

// Add adds o's counters to k.
func (k *KernelStats) Add(o KernelStats) {
	k.Packets += o.Packets
	k.Drops += o.Drops
	k.Freezes += o.Freezes
}

// ErrCapturePermission marks a capture the process lacks privileges for.
var ErrCapturePermission = errors.New("needs CAP_NET_RAW (run as root or setcap cap_net_raw,cap_net_admin+ep)")

// ErrInterfaceGone is returned by Wait when the captured interface was
// removed.
var ErrInterfaceGone = errors.New("interface removed")
