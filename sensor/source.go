package sensor

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
)

// Source yields packets. The data slice may be reused by the next call
// (zero copy): the engine copies what it keeps.
type Source interface {
	ReadPacket() (data []byte, ci gopacket.CaptureInfo, link layers.LinkType, err error)
	Close() error
}

// FileSource reads a classic pcap (µs or ns, either byte order) or pcapng
// file, optionally gzip-compressed.
type FileSource struct {
	name   string
	f      *os.File
	cr     *countingReader
	pcap   *pcapReader
	ng     *pcapgo.NgReader
	link   layers.LinkType
	ngLink []layers.LinkType
	// off is the byte offset (of the uncompressed stream) where the record
	// being read starts; errors name it.
	off int64
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// ErrCutShort marks a capture that ends in the middle of a record, as files
// copied from a running capture do: what came before is still used.
var ErrCutShort = errors.New("file cut mid-record")

// FormatError says where a capture file stops being readable.
type FormatError struct {
	File   string
	Offset int64
	Err    error
}

func (e *FormatError) Error() string {
	return fmt.Sprintf("%s: byte offset %d: %v", e.File, e.Offset, e.Err)
}

func (e *FormatError) Unwrap() error { return e.Err }

// maxCaptureLength bounds one captured frame (TSO frames reach 64 KiB;
// pcapng readers apply their own bound).
const maxCaptureLength = 1 << 20

// maxInterfaces bounds the per-interface link type cache of a pcapng file.
const maxInterfaces = 1024

// OpenFile opens a capture file for reading.
func OpenFile(name string) (*FileSource, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, fmt.Errorf("open capture: %w", err)
	}
	s := &FileSource{name: name, f: f}
	br := bufio.NewReaderSize(f, 1<<20)
	var r io.Reader = br
	magic, _ := br.Peek(4)
	if len(magic) >= 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		gz, err := gzip.NewReader(br)
		if err != nil {
			f.Close()
			return nil, &FormatError{File: name, Offset: 0, Err: fmt.Errorf("gzip: %w", err)}
		}
		bgz := bufio.NewReaderSize(gz, 1<<20)
		r = bgz
		magic, _ = bgz.Peek(4)
	}
	s.cr = &countingReader{r: r}
	switch {
	case bytes.Equal(magic, []byte{0x0a, 0x0d, 0x0d, 0x0a}):
		ng, err := pcapgo.NewNgReader(s.cr, pcapgo.NgReaderOptions{})
		if err != nil {
			f.Close()
			return nil, &FormatError{File: name, Offset: s.cr.n, Err: fmt.Errorf("pcapng header: %w", err)}
		}
		s.ng = ng
		s.link = ng.LinkType()
	default:
		p, err := newPcapReader(s.cr, pcapBlockSize)
		if err != nil {
			f.Close()
			return nil, &FormatError{File: name, Offset: 0, Err: fmt.Errorf("not a pcap or pcapng file: %w", err)}
		}
		s.pcap = p
		s.link = p.link
	}
	return s, nil
}

// Consumed returns how many bytes of the file have been read so far
// (compressed bytes for a gzip'd file), for progress reports.
func (s *FileSource) Consumed() int64 {
	if pos, err := s.f.Seek(0, io.SeekCurrent); err == nil {
		return pos
	}
	return 0
}

// Name returns the file name.
func (s *FileSource) Name() string { return s.name }

// ReadPacket returns the next packet; io.EOF at a clean end.
func (s *FileSource) ReadPacket() ([]byte, gopacket.CaptureInfo, layers.LinkType, error) {
	if s.pcap != nil {
		data, ci, off, err := s.pcap.next()
		if err != nil {
			if err == io.EOF {
				return nil, ci, 0, io.EOF
			}
			return nil, ci, 0, &FormatError{File: s.name, Offset: off, Err: err}
		}
		return data, ci, s.link, nil
	}
	data, ci, err := s.ng.ZeroCopyReadPacketData()
	if err != nil {
		return nil, ci, 0, s.wrap(err)
	}
	link := s.link
	if ci.InterfaceIndex > 0 {
		link = s.ifaceLink(ci.InterfaceIndex)
	}
	return data, ci, link, nil
}

func (s *FileSource) ifaceLink(i int) layers.LinkType {
	if i >= maxInterfaces {
		return s.link
	}
	for len(s.ngLink) <= i {
		link := s.link
		if iface, err := s.ng.Interface(len(s.ngLink)); err == nil {
			link = iface.LinkType
		}
		s.ngLink = append(s.ngLink, link)
	}
	return s.ngLink[i]
}

func (s *FileSource) wrap(err error) error {
	if errors.Is(err, io.EOF) {
		// gopacket's pcapng reader reports a block cut short as a plain EOF;
		// walk the block lengths to tell the two apart.
		if s.ng != nil {
			if off, cut := pcapngCut(s.name); cut {
				return &FormatError{File: s.name, Offset: off, Err: fmt.Errorf("%w: %w", ErrCutShort, io.ErrUnexpectedEOF)}
			}
		}
		return io.EOF
	}
	off := s.off
	if s.ng != nil {
		off = s.cr.n
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return &FormatError{File: s.name, Offset: off, Err: fmt.Errorf("%w: %w", ErrCutShort, err)}
	}
	return &FormatError{File: s.name, Offset: off, Err: err}
}

// Close stops the block reader and closes the file.
func (s *FileSource) Close() error {
	if s.pcap != nil {
		s.pcap.br.close()
	}
	return s.f.Close()
}

// pcapngCut walks a pcapng file's block lengths and reports where its last
// block starts when that block runs past the end of the file. It reads the
// file once more, only when the reader has met its end.
func pcapngCut(name string) (int64, bool) {
	f, err := os.Open(name)
	if err != nil {
		return 0, false
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 1<<16)
	var r io.Reader = br
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		gz, err := gzip.NewReader(br)
		if err != nil {
			return 0, false
		}
		r = bufio.NewReaderSize(gz, 1<<16)
	}
	rd := r.(*bufio.Reader)
	var off int64
	var order binary.ByteOrder = binary.LittleEndian
	for {
		hdr, _ := rd.Peek(12)
		if len(hdr) == 0 {
			return 0, false
		}
		if len(hdr) < 8 {
			return off, true
		}
		if binary.LittleEndian.Uint32(hdr) == 0x0a0d0d0a && len(hdr) >= 12 {
			if binary.LittleEndian.Uint32(hdr[8:]) == 0x1a2b3c4d {
				order = binary.LittleEndian
			} else {
				order = binary.BigEndian
			}
		}
		n := int64(order.Uint32(hdr[4:]))
		if n < 12 || n%4 != 0 {
			return 0, false // not a length we can follow: leave it to the reader's error
		}
		d, err := rd.Discard(int(n))
		if int64(d) < n {
			return off, true
		}
		if err != nil {
			return 0, false
		}
		off += n
	}
}
