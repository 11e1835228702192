package source

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
)

// writeRandomPcapng writes n packets of random sizes over two interfaces
// (µs and ns resolution) with pcapgo's writer.
func writeRandomPcapng(t testing.TB, n int) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := pcapgo.NewNgWriterInterface(&buf, pcapgo.NgInterface{LinkType: layers.LinkTypeEthernet, SnapLength: 65536},
		pcapgo.DefaultNgWriterOptions)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.AddInterface(pcapgo.NgInterface{LinkType: layers.LinkTypeEthernet, SnapLength: 65536,
		TimestampResolution: 9}); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	ts := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	for range n {
		p := make([]byte, rng.IntN(300))
		for j := range p {
			p[j] = byte(rng.Uint32())
		}
		ts = ts.Add(time.Duration(rng.IntN(5000000)))
		ci := gopacket.CaptureInfo{Timestamp: ts, CaptureLength: len(p), Length: len(p) + 4, InterfaceIndex: rng.IntN(2)}
		if err := w.WritePacket(ci, p); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// comparePcapng reads file with the block reader and with pcapgo's reader:
// the same packets, times, lengths, interfaces and link types.
func comparePcapng(t *testing.T, file []byte, bs int) int {
	t.Helper()
	ref, err := pcapgo.NewNgReader(bytes.NewReader(file), pcapgo.NgReaderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	r, err := newPcapngReader(bytes.NewReader(file), bs)
	if err != nil {
		t.Fatal(err)
	}
	defer r.br.close()
	if r.link != ref.LinkType() {
		t.Errorf("link %v, pcapgo %v", r.link, ref.LinkType())
	}
	for i := 0; ; i++ {
		want, wci, werr := ref.ReadPacketData()
		got, ci, link, _, err := r.next()
		if werr != nil {
			if werr == io.EOF && err != io.EOF {
				t.Fatalf("block %d: after %d packets: %v, pcapgo io.EOF", bs, i, err)
			}
			return i
		}
		if err != nil {
			t.Fatalf("block %d: packet %d: %v", bs, i, err)
		}
		if !bytes.Equal(got, want) || !ci.Timestamp.Equal(wci.Timestamp) || ci.Length != wci.Length ||
			ci.CaptureLength != wci.CaptureLength || ci.InterfaceIndex != wci.InterfaceIndex || link != ref.LinkType() {
			t.Fatalf("block %d: packet %d: %+v, pcapgo %+v", bs, i, ci, wci)
		}
	}
}

// TestPcapngReaderBlocks reads a two-interface file with blocks from 1 byte
// (every block straddles) to larger than the file.
func TestPcapngReaderBlocks(t *testing.T) {
	file := writeRandomPcapng(t, 300)
	for _, bs := range []int{1, 7, 64, 1000, 1 << 20} {
		if n := comparePcapng(t, file, bs); n != 300 {
			t.Errorf("block %d: %d packets, want 300", bs, n)
		}
	}
}

// TestPcapngReaderShared compares with pcapgo on every shared pcapng file.
func TestPcapngReaderShared(t *testing.T) {
	files, _ := filepath.Glob("../../../shared/pcaps/*")
	if len(files) == 0 {
		t.Skip("../shared/pcaps absent")
	}
	n := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue // expected/ is a directory
		}
		if !bytes.HasPrefix(b, []byte{0x0a, 0x0d, 0x0d, 0x0a}) {
			continue
		}
		t.Run(filepath.Base(f), func(t *testing.T) { comparePcapng(t, b, 4096) })
		n++
	}
	if n == 0 {
		t.Error("no pcapng file among the shared captures")
	}
}

// TestPcapngReaderCut cuts a file at every length inside its last block.
func TestPcapngReaderCut(t *testing.T) {
	file := writeRandomPcapng(t, 5)
	last := 0
	for off := 0; off+8 <= len(file); {
		last = off
		off += int(le32(file[off+4:]))
	}
	for cut := last + 1; cut < len(file); cut++ {
		r, err := newPcapngReader(bytes.NewReader(file[:cut]), 5)
		if err != nil {
			t.Fatal(err)
		}
		for i := range 4 {
			if _, _, _, _, err := r.next(); err != nil {
				t.Fatalf("cut %d: packet %d: %v", cut, i, err)
			}
		}
		_, _, _, off, err := r.next()
		if !errors.Is(err, ErrCutShort) || off != int64(last) {
			t.Errorf("cut %d: err %v at %d, want ErrCutShort at %d", cut, err, off, last)
		}
		r.br.close()
	}
}

func le32(b []byte) uint32 {
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}

// FuzzPcapngReader: hostile files end in an error, never a panic, and a
// packet never reaches past its block.
func FuzzPcapngReader(f *testing.F) {
	f.Add(writeRandomPcapng(f, 3))
	f.Fuzz(func(t *testing.T, file []byte) {
		r, err := newPcapngReader(bytes.NewReader(file), 64)
		if err != nil {
			return
		}
		defer r.br.close()
		for range 1000 {
			data, _, _, _, err := r.next()
			if err != nil {
				return
			}
			if len(data) > maxCaptureLength {
				t.Fatalf("%d-byte packet", len(data))
			}
		}
	})
}
