package source

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
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
	name string
	f    *os.File
	pcap *pcapReader
	ng   *pcapngReader
	link layers.LinkType
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
	// A plain file is read straight into the block reader's blocks: a
	// bufio.Reader in between copies every byte once more when the blocks
	// are smaller than its buffer.
	var r io.Reader = f
	var mb [4]byte
	n, _ := f.ReadAt(mb[:], 0)
	magic := mb[:n]
	if len(magic) >= 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		gz, err := gzip.NewReader(bufio.NewReaderSize(f, 1<<20))
		if err != nil {
			f.Close()
			return nil, &FormatError{File: name, Offset: 0, Err: fmt.Errorf("gzip: %w", err)}
		}
		bgz := bufio.NewReaderSize(gz, 1<<20)
		r = bgz
		magic, _ = bgz.Peek(4)
	}
	switch {
	case bytes.Equal(magic, []byte{0x0a, 0x0d, 0x0d, 0x0a}):
		ng, err := newPcapngReader(r, pcapBlockSize)
		if err != nil {
			f.Close()
			return nil, &FormatError{File: name, Offset: 0, Err: fmt.Errorf("pcapng header: %w", err)}
		}
		s.ng = ng
		s.link = ng.link
	default:
		p, err := newPcapReader(r, pcapBlockSize)
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

// Size returns the file's size (compressed for a gzip'd file), 0 when
// unknown.
func (s *FileSource) Size() int64 {
	if fi, err := s.f.Stat(); err == nil {
		return fi.Size()
	}
	return 0
}

// Name returns the file name.
func (s *FileSource) Name() string { return s.name }

// Packet is a packet of a batch (ReadBatch).
type Packet struct {
	Data []byte
	CI   gopacket.CaptureInfo
	Link layers.LinkType
}

// ReadBatch fills ps with the next packets (at least one), valid until the
// next call; io.EOF at a clean end. Replay reads this way: one call per
// batch instead of three per packet, and each packet's capture info is
// built in place.
func (s *FileSource) ReadBatch(ps []Packet) (int, error) {
	if s.pcap != nil {
		if n := s.pcap.batch(ps); n > 0 {
			return n, nil
		}
	}
	// A record across two blocks, a big-endian or pcapng file, an error:
	// one at a time.
	data, ci, link, err := s.ReadPacket()
	if err != nil {
		return 0, err
	}
	ps[0] = Packet{Data: data, CI: ci, Link: link}
	return 1, nil
}

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
	data, ci, link, off, err := s.ng.next()
	if err != nil {
		if err == io.EOF {
			return nil, ci, 0, io.EOF
		}
		return nil, ci, 0, &FormatError{File: s.name, Offset: off, Err: err}
	}
	return data, ci, link, nil
}

// Close stops the block reader and closes the file.
func (s *FileSource) Close() error {
	if s.pcap != nil {
		s.pcap.br.close()
	}
	if s.ng != nil {
		s.ng.br.close()
	}
	return s.f.Close()
}
