package source

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// Block reading of pcapng files, on the block reader of classic pcap:
// records are sliced in place out of large block reads instead of being copied
// through bufio into pcapgo's packet buffer. What packets it yields, with
// which times and link types, follows pcapgo's NgReader (without mixed link
// types): the interfaces of the first section fix the link type, packets of
// an interface with another one are skipped, Simple Packet Blocks carry no
// time.

// pcapng block types and option codes (the pcapng specification).
const (
	ngSHB      = 0x0a0d0d0a
	ngIDB      = 1
	ngPB       = 2 // obsolete Packet Block
	ngSPB      = 3
	ngISB      = 5
	ngEPB      = 6
	ngBOM      = 0x1a2b3c4d
	ngOptEnd   = 0
	ngOptRes   = 9  // if_tsresol
	ngOptOff   = 14 // if_tsoffset
	ngMaxBlock = maxCaptureLength + 1<<16
)

var errNotPcapng = errors.New("not a pcapng file")

type ngIface struct {
	link       layers.LinkType
	snap       uint32
	div        uint64 // units per second
	up, down   uint64 // unit to nanoseconds: * up / down
	offsetSecs uint64
}

type pcapngReader struct {
	br     *blockReader
	big    bool
	ifaces []ngIface
	link   layers.LinkType
	// linkSet is set once the first section's first interface is read.
	linkSet bool
}

func newPcapngReader(r io.Reader, blockSize int) (*pcapngReader, error) {
	p := &pcapngReader{br: newBlockReader(r, blockSize, pcapBlockCount)}
	typ, body, _, err := p.block()
	if err != nil {
		p.br.close()
		return nil, fmt.Errorf("%w: %w", errNotPcapng, err)
	}
	if typ != ngSHB {
		p.br.close()
		return nil, fmt.Errorf("%w: first block type %#x", errNotPcapng, typ)
	}
	if err := p.section(body); err != nil {
		p.br.close()
		return nil, err
	}
	// The first interface names the file's link type.
	for len(p.ifaces) == 0 {
		typ, body, _, err := p.block()
		if err == nil {
			switch typ {
			case ngIDB:
				err = p.iface(body)
			case ngEPB, ngPB, ngSPB, ngISB:
				err = errors.New("packet block before any interface description")
			}
		}
		if err != nil {
			p.br.close()
			return nil, fmt.Errorf("first interface: %w", err)
		}
	}
	return p, nil
}

func (p *pcapngReader) u16(b []byte) uint16 {
	if p.big {
		return binary.BigEndian.Uint16(b)
	}
	return binary.LittleEndian.Uint16(b)
}

func (p *pcapngReader) u32(b []byte) uint32 {
	if p.big {
		return binary.BigEndian.Uint32(b)
	}
	return binary.LittleEndian.Uint32(b)
}

// block reads one block and returns its type and its body (between the
// length and the trailing length), valid until the next call, and the
// offset where it starts.
func (p *pcapngReader) block() (uint32, []byte, int64, error) {
	start := p.br.tell()
	hb, err := p.br.next(8)
	if err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return 0, nil, start, fmt.Errorf("%w: block header", ErrCutShort)
		}
		return 0, nil, start, err
	}
	// A copy: the next read may retire the block hb points into.
	var h [8]byte
	copy(h[:], hb)
	typ := binary.LittleEndian.Uint32(h[:])
	if typ == ngSHB {
		// The section header says the byte order of what follows.
		bom, err := p.br.next(4)
		if err != nil {
			return 0, nil, start, fmt.Errorf("%w: section header", ErrCutShort)
		}
		switch {
		case binary.LittleEndian.Uint32(bom) == ngBOM:
			p.big = false
		case binary.BigEndian.Uint32(bom) == ngBOM:
			p.big = true
		default:
			return 0, nil, start, errors.New("wrong byte order value in section header")
		}
	}
	n := int64(p.u32(h[4:8]))
	if typ != ngSHB {
		typ = p.u32(h[:])
	}
	head := int64(8)
	if typ == ngSHB {
		head = 12
	}
	if n < head+4 || n%4 != 0 || n > ngMaxBlock {
		return 0, nil, start, fmt.Errorf("block type %#x: bad total length %d", typ, n)
	}
	body, err := p.br.next(int(n - head))
	if err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return 0, nil, start, fmt.Errorf("%w: %d-byte block", ErrCutShort, n)
		}
		return 0, nil, start, err
	}
	return typ, body[:len(body)-4], start, nil
}

// section starts a section: version check, then the interfaces of the
// previous one are forgotten.
func (p *pcapngReader) section(body []byte) error {
	if len(body) < 12 {
		return errors.New("section header too short")
	}
	if maj, min := p.u16(body), p.u16(body[2:]); maj != 1 || min != 0 {
		return fmt.Errorf("pcapng version %d.%d not supported", maj, min)
	}
	p.ifaces = p.ifaces[:0]
	return nil
}

// iface adds an interface description.
func (p *pcapngReader) iface(body []byte) error {
	if len(body) < 8 {
		return errors.New("interface description too short")
	}
	ifc := ngIface{link: layers.LinkType(p.u16(body)), snap: p.u32(body[4:])}
	res := byte(6)
	for o := body[8:]; len(o) >= 4; {
		code, n := p.u16(o), int(p.u16(o[2:]))
		if code == ngOptEnd {
			break
		}
		if len(o) < 4+n {
			return errors.New("interface option runs past its block")
		}
		v := o[4 : 4+n]
		switch {
		case code == ngOptRes && n >= 1:
			res = v[0]
		case code == ngOptOff && n >= 8:
			if p.big {
				ifc.offsetSecs = binary.BigEndian.Uint64(v)
			} else {
				ifc.offsetSecs = binary.LittleEndian.Uint64(v)
			}
		}
		o = o[min(len(o), 4+(n+3)&^3):]
	}
	if res == 0 {
		res = 6
	}
	exp := uint(res & 0x7f)
	if res&0x80 != 0 {
		if exp >= 64 {
			return fmt.Errorf("timestamp resolution 2^-%d not supported", exp)
		}
		ifc.div = 1 << exp
	} else {
		if exp > 19 {
			return fmt.Errorf("timestamp resolution 10^-%d not supported", exp)
		}
		ifc.div = 1
		for range exp {
			ifc.div *= 10
		}
	}
	ifc.up, ifc.down = 1, 1
	if ifc.div < 1e9 {
		ifc.up = 1e9 / ifc.div
	} else {
		ifc.down = ifc.div / 1e9
	}
	if len(p.ifaces) >= maxInterfaces {
		return fmt.Errorf("more than %d interfaces in a section", maxInterfaces)
	}
	p.ifaces = append(p.ifaces, ifc)
	if !p.linkSet {
		p.link, p.linkSet = ifc.link, true
	}
	return nil
}

func (p *pcapngReader) time(i int, hi, lo uint32) time.Time {
	ifc := &p.ifaces[i]
	ts := uint64(hi)<<32 | uint64(lo)
	return time.Unix(int64(ts/ifc.div+ifc.offsetSecs), int64(ts%ifc.div*ifc.up/ifc.down)).UTC()
}

// next returns the next packet, valid until the following call, its link
// type, and the offset where its block starts.
func (p *pcapngReader) next() ([]byte, gopacket.CaptureInfo, layers.LinkType, int64, error) {
	var ci gopacket.CaptureInfo
	for {
		typ, b, start, err := p.block()
		if err != nil {
			return nil, ci, 0, start, err
		}
		var data []byte
		switch typ {
		case ngSHB:
			if err := p.section(b); err != nil {
				return nil, ci, 0, start, err
			}
			continue
		case ngIDB:
			if err := p.iface(b); err != nil {
				return nil, ci, 0, start, err
			}
			continue
		case ngEPB, ngPB:
			if len(b) < 20 {
				return nil, ci, 0, start, errors.New("packet block too short")
			}
			if typ == ngEPB {
				ci.InterfaceIndex = int(p.u32(b))
			} else {
				ci.InterfaceIndex = int(p.u16(b))
			}
			if ci.InterfaceIndex >= len(p.ifaces) {
				return nil, ci, 0, start, fmt.Errorf("interface %d not described in its section (%d are)", ci.InterfaceIndex, len(p.ifaces))
			}
			ci.Timestamp = p.time(ci.InterfaceIndex, p.u32(b[4:]), p.u32(b[8:]))
			ci.CaptureLength, ci.Length = int(p.u32(b[12:])), int(p.u32(b[16:]))
			if ci.CaptureLength > len(b)-20 {
				return nil, ci, 0, start, fmt.Errorf("captured length %d exceeds its block", ci.CaptureLength)
			}
			data = b[20 : 20+ci.CaptureLength]
		case ngSPB:
			if len(b) < 4 {
				return nil, ci, 0, start, errors.New("simple packet block too short")
			}
			if len(p.ifaces) == 0 {
				return nil, ci, 0, start, errors.New("simple packet block before any interface")
			}
			ci.Timestamp, ci.InterfaceIndex = time.Time{}, 0
			ci.Length = int(p.u32(b))
			ci.CaptureLength = min(ci.Length, len(b)-4)
			if s := p.ifaces[0].snap; s != 0 && ci.CaptureLength > int(s) {
				ci.CaptureLength = int(s)
			}
			data = b[4 : 4+ci.CaptureLength]
		case ngISB:
			if len(b) >= 4 && int(p.u32(b)) >= len(p.ifaces) {
				return nil, ci, 0, start, fmt.Errorf("statistics of interface %d not described in its section", p.u32(b))
			}
			continue
		default:
			continue // name resolution, decryption secrets, custom blocks
		}
		link := p.ifaces[ci.InterfaceIndex].link
		if link != p.link {
			continue // pcapgo skips interfaces of another link type too
		}
		return data, ci, link, start, nil
	}
}
