//go:build linux

package source

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// This file is a TPACKET_V3 receive ring written against the kernel ABI with
// golang.org/x/sys/unix: gopacket's afpacket package needs cgo, and the
// sensor ships as one static binary.

// Kernel ABI offsets (linux/if_packet.h): struct tpacket_block_desc and
// struct tpacket3_hdr. Both have a fixed layout on every architecture.
const (
	blkStatusOff   = 8  // hdr.bh1.block_status
	blkNumPktsOff  = 12 // hdr.bh1.num_pkts
	blkFirstPktOff = 16 // hdr.bh1.offset_to_first_pkt
	blkDescLen     = 48

	pktNextOff    = 0  // tp_next_offset
	pktSecOff     = 4  // tp_sec
	pktNsecOff    = 8  // tp_nsec
	pktSnapOff    = 12 // tp_snaplen
	pktLenOff     = 16 // tp_len
	pktStatusOff  = 20 // tp_status
	pktMacOff     = 24 // tp_mac
	pktVLANTCIOff = 32 // hv1.tp_vlan_tci
	pktVLANTPOff  = 36 // hv1.tp_vlan_tpid
	pktHdrLen     = 48
	// A struct sockaddr_ll follows the header; its sll_pkttype says
	// whether the packet arrived or left.
	sllLen        = 20
	sllPkttypeOff = 10

	// tpStatusVLANValid and tpStatusVLANTPIDValid say the kernel took an
	// 802.1Q tag off the frame and left it in the header.
	tpStatusVLANValid     = 0x10
	tpStatusVLANTPIDValid = 0x40
)

// AFPacket is one TPACKET_V3 capture socket. Next and Wait are for one
// goroutine (the worker that owns the socket); Stats may be called from any.
type AFPacket struct {
	iface   string
	ifindex int
	link    layers.LinkType
	fd      int
	ring    []byte
	bsize   int
	nblocks int

	// The reader's position: block index, whether that block is held
	// (status TP_STATUS_USER, owned by us), packets left in it and the
	// next packet's offset in the block.
	blk     int
	held    bool
	left    uint32
	off     uint32
	scratch []byte // frame with its VLAN tag put back
	// loopback drops the outgoing copy of each packet.
	loopback bool

	mu     sync.Mutex // guards fd at Close against Stats, and total
	closed bool
	total  KernelStats
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// OpenAFPacket opens a capture socket on cfg.Iface.
func OpenAFPacket(cfg AFPacketConfig) (*AFPacket, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("AF_PACKET ring on %s: %w", cfg.Iface, err)
	}
	ifi, err := net.InterfaceByName(cfg.Iface)
	if err != nil {
		return nil, fmt.Errorf("interface %s: no such network interface", cfg.Iface)
	}
	link, loopback, err := ifaceLinkType(cfg.Iface)
	if err != nil {
		return nil, err
	}
	filter := cfg.Filter
	if filter == nil {
		filter, err = DefaultFilter(link, cfg.SnapLen)
		if err != nil {
			return nil, err
		}
	}
	// Protocol 0: the socket receives nothing until bind, so no packet of
	// another interface and none unfiltered gets into the ring.
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
			return nil, fmt.Errorf("AF_PACKET socket on %s: %w: %w", cfg.Iface, err, ErrCapturePermission)
		}
		return nil, fmt.Errorf("AF_PACKET socket on %s: %w", cfg.Iface, err)
	}
	a := &AFPacket{iface: cfg.Iface, ifindex: ifi.Index, link: link, loopback: loopback, fd: fd, bsize: cfg.BlockSize, nblocks: cfg.NumBlocks}
	if err := a.setup(cfg, filter); err != nil {
		a.Close()
		return nil, fmt.Errorf("AF_PACKET socket on %s: %w", cfg.Iface, err)
	}
	return a, nil
}

func (a *AFPacket) setup(cfg AFPacketConfig, filter []bpf.RawInstruction) error {
	if err := unix.SetsockoptInt(a.fd, unix.SOL_PACKET, unix.PACKET_VERSION, unix.TPACKET_V3); err != nil {
		return fmt.Errorf("TPACKET_V3: %w", err)
	}
	if err := attachFilter(a.fd, filter); err != nil {
		return err
	}
	req := unix.TpacketReq3{
		Block_size:     uint32(cfg.BlockSize),
		Block_nr:       uint32(cfg.NumBlocks),
		Frame_size:     uint32(cfg.FrameSize),
		Frame_nr:       uint32(cfg.BlockSize / cfg.FrameSize * cfg.NumBlocks),
		Retire_blk_tov: uint32(max(cfg.BlockTimeout.Milliseconds(), 1)),
	}
	if err := unix.SetsockoptTpacketReq3(a.fd, unix.SOL_PACKET, unix.PACKET_RX_RING, &req); err != nil {
		return fmt.Errorf("PACKET_RX_RING (%d blocks of %d bytes): %w", cfg.NumBlocks, cfg.BlockSize, err)
	}
	ring, err := unix.Mmap(a.fd, 0, cfg.BlockSize*cfg.NumBlocks, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return fmt.Errorf("mmap ring of %d bytes: %w", cfg.BlockSize*cfg.NumBlocks, err)
	}
	a.ring = ring
	sa := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: a.ifindex}
	if err := unix.Bind(a.fd, sa); err != nil {
		return fmt.Errorf("bind: %w", err)
	}
	if cfg.Promisc {
		mreq := unix.PacketMreq{Ifindex: int32(a.ifindex), Type: unix.PACKET_MR_PROMISC}
		if err := unix.SetsockoptPacketMreq(a.fd, unix.SOL_PACKET, unix.PACKET_ADD_MEMBERSHIP, &mreq); err != nil {
			return fmt.Errorf("promiscuous mode: %w", err)
		}
	}
	if cfg.Fanout {
		// DEFRAG: the kernel reassembles IPv4 fragments before hashing, so
		// a fragmented segment reaches the worker that owns its flow.
		v := int(cfg.FanoutGroup) | (unix.PACKET_FANOUT_HASH|unix.PACKET_FANOUT_FLAG_DEFRAG)<<16
		if err := unix.SetsockoptInt(a.fd, unix.SOL_PACKET, unix.PACKET_FANOUT, v); err != nil {
			return fmt.Errorf("PACKET_FANOUT group %d: %w (another process may use that group id)", cfg.FanoutGroup, err)
		}
	}
	return nil
}

func attachFilter(fd int, prog []bpf.RawInstruction) error {
	if len(prog) == 0 || len(prog) > bpfMaxInsns {
		return fmt.Errorf("BPF filter of %d instructions (want 1 to %d)", len(prog), bpfMaxInsns)
	}
	ins := make([]unix.SockFilter, len(prog))
	for i, r := range prog {
		ins[i] = unix.SockFilter{Code: r.Op, Jt: r.Jt, Jf: r.Jf, K: r.K}
	}
	fp := unix.SockFprog{Len: uint16(len(ins)), Filter: &ins[0]}
	if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &fp); err != nil {
		return fmt.Errorf("attach BPF filter: %w", err)
	}
	return nil
}

// ifaceLinkType maps the interface's ARP hardware type to the link type
// of the frames a SOCK_RAW packet socket delivers.
func ifaceLinkType(iface string) (link layers.LinkType, loopback bool, err error) {
	b, err := os.ReadFile("/sys/class/net/" + iface + "/type")
	if err != nil {
		// No sysfs (a minimal container): Ethernet is by far the likeliest.
		return layers.LinkTypeEthernet, false, nil
	}
	t, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return layers.LinkTypeEthernet, false, nil
	}
	switch t {
	case unix.ARPHRD_ETHER:
		return layers.LinkTypeEthernet, false, nil
	case unix.ARPHRD_LOOPBACK:
		return layers.LinkTypeEthernet, true, nil
	case unix.ARPHRD_NONE:
		return layers.LinkTypeRaw, false, nil
	}
	return 0, false, fmt.Errorf("interface %s: ARP hardware type %d is not supported (Ethernet, loopback or raw IP)", iface, t)
}

// Iface returns the interface name.
func (a *AFPacket) Iface() string { return a.iface }

// LinkType returns the link type of the frames Next returns.
func (a *AFPacket) LinkType() layers.LinkType { return a.link }

func (a *AFPacket) blockStatus(i int) *uint32 {
	return (*uint32)(unsafe.Pointer(&a.ring[i*a.bsize+blkStatusOff]))
}

// Next returns the next packet in the ring without waiting; ok is false
// when the ring is empty. data points into the ring and stays valid until
// the next call of Next.
func (a *AFPacket) Next() (data []byte, ci gopacket.CaptureInfo, ok bool) {
	for {
		if a.held && a.left > 0 {
			if data, ci, ok := a.packet(); ok {
				return data, ci, true
			}
			continue
		}
		if a.held {
			// Hand the block back: the kernel fills it again.
			atomic.StoreUint32(a.blockStatus(a.blk), unix.TP_STATUS_KERNEL)
			a.held = false
			a.blk = (a.blk + 1) % a.nblocks
		}
		if atomic.LoadUint32(a.blockStatus(a.blk))&unix.TP_STATUS_USER == 0 {
			return nil, ci, false
		}
		b := a.ring[a.blk*a.bsize : (a.blk+1)*a.bsize]
		a.held = true
		a.left = binary.NativeEndian.Uint32(b[blkNumPktsOff:])
		a.off = binary.NativeEndian.Uint32(b[blkFirstPktOff:])
	}
}

// packet decodes the packet at a.off of the held block. The kernel wrote
// the offsets, but they are checked all the same: a bad one ends the block
// rather than read outside it.
func (a *AFPacket) packet() ([]byte, gopacket.CaptureInfo, bool) {
	var ci gopacket.CaptureInfo
	b := a.ring[a.blk*a.bsize : (a.blk+1)*a.bsize]
	off := uint64(a.off)
	if off < blkDescLen || off+pktHdrLen+sllLen > uint64(len(b)) {
		a.left = 0
		return nil, ci, false
	}
	h := b[off:]
	next := binary.NativeEndian.Uint32(h[pktNextOff:])
	snap := uint64(binary.NativeEndian.Uint32(h[pktSnapOff:]))
	mac := uint64(binary.NativeEndian.Uint16(h[pktMacOff:]))
	status := binary.NativeEndian.Uint32(h[pktStatusOff:])
	a.left--
	if next == 0 {
		a.left = 0
	}
	a.off += next
	if mac+snap > uint64(len(h)) {
		a.left = 0
		return nil, ci, false
	}
	if a.loopback && h[pktHdrLen+sllPkttypeOff] == unix.PACKET_OUTGOING {
		// Loopback shows every packet twice, leaving and arriving; keep
		// the arrival, as libpcap does.
		return nil, ci, false
	}
	ci.Timestamp = time.Unix(int64(binary.NativeEndian.Uint32(h[pktSecOff:])), int64(binary.NativeEndian.Uint32(h[pktNsecOff:])))
	ci.CaptureLength = int(snap)
	ci.Length = int(binary.NativeEndian.Uint32(h[pktLenOff:]))
	data := h[mac : mac+snap]
	if status&tpStatusVLANValid != 0 && a.link == layers.LinkTypeEthernet && len(data) >= 12 {
		// The kernel keeps the outer 802.1Q tag out of band; put it back
		// so that the frame reads as it did on the wire (events carry
		// the VLAN id, as in a replay of the same traffic).
		tpid := uint16(ethDot1Q)
		if status&tpStatusVLANTPIDValid != 0 {
			if t := binary.NativeEndian.Uint16(h[pktVLANTPOff:]); t != 0 {
				tpid = t
			}
		}
		tci := uint16(binary.NativeEndian.Uint32(h[pktVLANTCIOff:]))
		if mac >= pktHdrLen+sllLen+4 {
			// The block is ours until it goes back to the kernel: move
			// the MAC addresses into the alignment gap before the frame
			// and write the tag behind them, without a copy of the frame.
			s := h[mac-4 : mac+snap]
			copy(s, s[4:16])
			binary.BigEndian.PutUint16(s[12:], tpid)
			binary.BigEndian.PutUint16(s[14:], tci)
			ci.CaptureLength += 4
			ci.Length += 4
			return s, ci, true
		}
		need := len(data) + 4
		if cap(a.scratch) < need {
			a.scratch = make([]byte, need, max(need, 2048))
		}
		s := a.scratch[:need]
		copy(s, data[:12])
		binary.BigEndian.PutUint16(s[12:], tpid)
		binary.BigEndian.PutUint16(s[14:], tci)
		copy(s[16:], data[12:])
		data = s
		ci.CaptureLength += 4
		ci.Length += 4
	}
	return data, ci, true
}

// OpenRing opens a socket for a live worker.
func OpenRing(c AFPacketConfig) (Ring, error) {
	a, err := OpenAFPacket(c)
	if err != nil {
		return nil, err
	}
	return a, nil
}

// WaitRings is a live worker's sleep: poll on all its sockets, which
// OpenRing opened.
func WaitRings(socks []Ring, timeout time.Duration) error {
	var arr [8]*AFPacket
	as := arr[:0]
	for _, s := range socks {
		as = append(as, s.(*AFPacket))
	}
	var fdArr [8]unix.PollFd
	var fds []unix.PollFd
	if len(as) > len(fdArr) {
		fds = make([]unix.PollFd, len(as))
	} else {
		fds = fdArr[:len(as)]
	}
	return waitAFPackets(as, fds, timeout)
}

// Wait sleeps until one of socks has a block ready or timeout passes.
func WaitAFPackets(socks []*AFPacket, timeout time.Duration) error {
	fds := make([]unix.PollFd, len(socks))
	return waitAFPackets(socks, fds, timeout)
}

// waitAFPackets is WaitAFPackets with the caller's poll array (no
// allocation per wait).
func waitAFPackets(socks []*AFPacket, fds []unix.PollFd, timeout time.Duration) error {
	for i, s := range socks {
		fds[i] = unix.PollFd{Fd: int32(s.fd), Events: unix.POLLIN | unix.POLLERR}
	}
	_, err := unix.Poll(fds, int(timeout.Milliseconds()))
	if err != nil && !errors.Is(err, unix.EINTR) {
		return fmt.Errorf("poll: %w", err)
	}
	for i, s := range socks {
		if fds[i].Revents&(unix.POLLERR|unix.POLLNVAL) == 0 {
			continue
		}
		if err := s.sockError(); err != nil {
			return err
		}
	}
	return nil
}

// sockError reads and clears the socket's pending error. ENETDOWN comes
// both when the link goes down (capture resumes when it is up again) and
// when the interface is deleted (capture cannot resume).
func (a *AFPacket) sockError() error {
	v, err := unix.GetsockoptInt(a.fd, unix.SOL_SOCKET, unix.SO_ERROR)
	if err != nil {
		return fmt.Errorf("%s: SO_ERROR: %w", a.iface, err)
	}
	if v == 0 {
		return nil
	}
	if ifi, err := net.InterfaceByIndex(a.ifindex); err != nil || ifi.Name != a.iface {
		return fmt.Errorf("%s: %w", a.iface, ErrInterfaceGone)
	}
	if unix.Errno(v) == unix.ENETDOWN {
		return nil
	}
	return fmt.Errorf("%s: %w", a.iface, unix.Errno(v))
}

// Stats returns the kernel's counters since the socket was opened.
func (a *AFPacket) Stats() (KernelStats, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return a.total, nil
	}
	if err := a.readStatsLocked(); err != nil {
		return a.total, err
	}
	return a.total, nil
}

// readStatsLocked adds the kernel's counters to the total: reading them
// resets them in the kernel.
func (a *AFPacket) readStatsLocked() error {
	st, err := unix.GetsockoptTpacketStatsV3(a.fd, unix.SOL_PACKET, unix.PACKET_STATISTICS)
	if err != nil {
		return fmt.Errorf("%s: PACKET_STATISTICS: %w", a.iface, err)
	}
	a.total.Add(KernelStats{Packets: uint64(st.Packets), Drops: uint64(st.Drops), Freezes: uint64(st.Freeze_q_cnt)})
	return nil
}

// Close unmaps the ring and closes the socket. The counters stay readable.
func (a *AFPacket) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return nil
	}
	a.closed = true
	if a.ring != nil {
		_ = a.readStatsLocked()
		_ = unix.Munmap(a.ring)
		a.ring = nil
	}
	return unix.Close(a.fd)
}
