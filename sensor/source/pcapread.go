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

// Block reading of classic pcap files. pcapgo's reader copies every record
// from its buffered reader into a packet buffer, on the goroutine that also
// decodes: on a two-core machine, reading was more than half of replay time.
// Here one goroutine reads large blocks (the kernel's copy and the system
// calls) while the decoding goroutine slices records out of them in place;
// only a record that straddles two blocks is copied.
//
// Blocks are small enough that the one being parsed and the next ones stay
// in the CPU's second-level cache: with 4 MiB blocks, every record header
// was a cache miss and replay of the mirror mix took a third longer.
const (
	pcapBlockSize  = 256 << 10
	pcapBlockCount = 4
)

type pcapBlock struct {
	data []byte
	err  error
}

type blockReader struct {
	free  chan []byte
	full  chan pcapBlock
	done  chan struct{}
	cur   []byte
	off   int
	pos   int64 // stream offset of cur[0]
	err   error // why the stream ended, once the blocks are used up
	carry []byte
}

func newBlockReader(r io.Reader, size, count int) *blockReader {
	b := &blockReader{free: make(chan []byte, count), full: make(chan pcapBlock, count), done: make(chan struct{})}
	for i := 0; i < count; i++ {
		b.free <- make([]byte, size)
	}
	go b.fill(r)
	return b
}

func (b *blockReader) fill(r io.Reader) {
	defer close(b.full)
	for {
		var buf []byte
		select {
		case buf = <-b.free:
		case <-b.done:
			return
		}
		n, err := io.ReadFull(r, buf[:cap(buf)])
		if errors.Is(err, io.ErrUnexpectedEOF) {
			err = io.EOF
		}
		select {
		case b.full <- pcapBlock{buf[:n], err}:
		case <-b.done:
			return
		}
		if err != nil {
			return
		}
	}
}

// tell is the stream offset of the next byte.
func (b *blockReader) tell() int64 { return b.pos + int64(b.off) }

// nextBlock retires the current block and waits for the next one; false at
// the end of the stream (b.err then says why).
func (b *blockReader) nextBlock() bool {
	if b.cur != nil {
		// Nothing points into the block any more: slices handed out are
		// valid only until the next call, and straddling bytes were copied.
		b.free <- b.cur[:cap(b.cur)]
		b.pos += int64(len(b.cur))
		b.cur, b.off = nil, 0
	}
	blk, ok := <-b.full
	if !ok {
		if b.err == nil {
			b.err = io.EOF
		}
		return false
	}
	if blk.err != nil && !errors.Is(blk.err, io.EOF) {
		b.err = blk.err // reported once this block's data is used up
	}
	b.cur = blk.data
	if len(b.cur) == 0 {
		return b.nextBlock()
	}
	return true
}

// next returns the next n bytes, in place when they lie in one block. It
// returns io.EOF when the stream ends exactly here, io.ErrUnexpectedEOF
// when it ends inside them.
func (b *blockReader) next(n int) ([]byte, error) {
	if len(b.cur)-b.off >= n {
		s := b.cur[b.off : b.off+n]
		b.off += n
		return s, nil
	}
	b.carry = append(b.carry[:0], b.cur[b.off:]...)
	b.off = len(b.cur)
	for len(b.carry) < n {
		if !b.nextBlock() {
			switch {
			case !errors.Is(b.err, io.EOF):
				return nil, b.err
			case len(b.carry) == 0:
				return nil, io.EOF
			}
			return nil, io.ErrUnexpectedEOF
		}
		take := min(n-len(b.carry), len(b.cur))
		b.carry = append(b.carry, b.cur[:take]...)
		b.off = take
	}
	return b.carry[:n], nil
}

func (b *blockReader) close() {
	select {
	case <-b.done:
	default:
		close(b.done)
	}
	for range b.full {
	}
}

// pcapReader parses classic pcap (µs or ns timestamps, either byte order).
type pcapReader struct {
	br *blockReader
	// big is set for big-endian files. Not a binary.ByteOrder: calls
	// through the interface are not inlined, and they were the hottest
	// instructions of the reader.
	big  bool
	nano bool
	link layers.LinkType
}

var errNotPcap = errors.New("not a pcap file")

func newPcapReader(r io.Reader, blockSize int) (*pcapReader, error) {
	p := &pcapReader{br: newBlockReader(r, blockSize, pcapBlockCount)}
	hdr, err := p.br.next(24)
	if err != nil {
		p.br.close()
		return nil, fmt.Errorf("%w: file header: %w", errNotPcap, err)
	}
	switch {
	case binary.LittleEndian.Uint32(hdr) == 0xa1b2c3d4:
	case binary.BigEndian.Uint32(hdr) == 0xa1b2c3d4:
		p.big = true
	case binary.LittleEndian.Uint32(hdr) == 0xa1b23c4d:
		p.nano = true
	case binary.BigEndian.Uint32(hdr) == 0xa1b23c4d:
		p.big, p.nano = true, true
	default:
		p.br.close()
		return nil, fmt.Errorf("%w: magic %x", errNotPcap, hdr[:4])
	}
	p.link = layers.LinkType(p.u32(hdr[20:]))
	return p, nil
}

func (p *pcapReader) u32(b []byte) uint32 {
	if p.big {
		return binary.BigEndian.Uint32(b)
	}
	return binary.LittleEndian.Uint32(b)
}

// next returns the next record, valid until the following call, and the
// offset where the record starts.
// batch fills ps with the records that lie wholly in the current block
// (little-endian files; none otherwise), in place: valid until the next
// call of batch or next. It stops at the first record it cannot take this
// way, which next then reads.
func (p *pcapReader) batch(ps []Packet) int {
	if p.big {
		return 0
	}
	b := p.br
	cur, off := b.cur, b.off
	n := 0
	for n < len(ps) && len(cur)-off >= 16 {
		h := cur[off : off+16]
		incl := int(binary.LittleEndian.Uint32(h[8:]))
		if incl > maxCaptureLength || len(cur)-off-16 < incl {
			break
		}
		sec, frac := binary.LittleEndian.Uint32(h), binary.LittleEndian.Uint32(h[4:])
		if !p.nano {
			frac *= 1000
		}
		q := &ps[n]
		q.Data = cur[off+16 : off+16+incl]
		q.CI = gopacket.CaptureInfo{Timestamp: time.Unix(int64(sec), int64(frac)).UTC(), CaptureLength: incl,
			Length: int(binary.LittleEndian.Uint32(h[12:]))}
		q.Link = p.link
		off += 16 + incl
		n++
	}
	b.off = off
	return n
}

func (p *pcapReader) next() ([]byte, gopacket.CaptureInfo, int64, error) {
	var ci gopacket.CaptureInfo
	start := p.br.tell()
	h, err := p.br.next(16)
	if err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, ci, start, fmt.Errorf("%w: record header", ErrCutShort)
		}
		return nil, ci, start, err
	}
	sec, frac := p.u32(h), p.u32(h[4:])
	incl, orig := int(p.u32(h[8:])), int(p.u32(h[12:]))
	if incl > maxCaptureLength {
		return nil, ci, start, fmt.Errorf("captured length %d exceeds the %d-byte bound", incl, maxCaptureLength)
	}
	data, err := p.br.next(incl)
	if err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return nil, ci, start, fmt.Errorf("%w: %d-byte record", ErrCutShort, incl)
		}
		return nil, ci, start, err
	}
	if !p.nano {
		frac *= 1000
	}
	ci.Timestamp = time.Unix(int64(sec), int64(frac)).UTC()
	ci.CaptureLength, ci.Length = incl, orig
	return data, ci, start, nil
}
