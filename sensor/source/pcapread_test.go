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

// writeRandomPcap writes n packets of random sizes with pcapgo (an independent
// writer) and returns the file and the packets.
func writeRandomPcap(t *testing.T, n int, nano bool) ([]byte, [][]byte, []gopacket.CaptureInfo) {
	t.Helper()
	var buf bytes.Buffer
	var w *pcapgo.Writer
	if nano {
		w = pcapgo.NewWriterNanos(&buf)
	} else {
		w = pcapgo.NewWriter(&buf)
	}
	if err := w.WriteFileHeader(65536, layers.LinkTypeEthernet); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var pkts [][]byte
	var cis []gopacket.CaptureInfo
	ts := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	for i := 0; i < n; i++ {
		p := make([]byte, rng.IntN(300))
		for j := range p {
			p[j] = byte(rng.Uint32())
		}
		ts = ts.Add(time.Duration(rng.IntN(5000)) * time.Microsecond)
		ci := gopacket.CaptureInfo{Timestamp: ts, CaptureLength: len(p), Length: len(p) + 4}
		if err := w.WritePacket(ci, p); err != nil {
			t.Fatal(err)
		}
		pkts, cis = append(pkts, p), append(cis, ci)
	}
	return buf.Bytes(), pkts, cis
}

// TestPcapReaderBlocks reads the same file with blocks from 1 byte (every
// header and record straddles) to larger than the file: the records and
// their capture info must be those written.
func TestPcapReaderBlocks(t *testing.T) {
	for _, nano := range []bool{false, true} {
		file, pkts, cis := writeRandomPcap(t, 200, nano)
		for _, bs := range []int{1, 7, 64, 1000, 1 << 20} {
			r, err := newPcapReader(bytes.NewReader(file), bs)
			if err != nil {
				t.Fatal(err)
			}
			if r.link != layers.LinkTypeEthernet {
				t.Errorf("link %v", r.link)
			}
			for i := range pkts {
				data, ci, _, err := r.next()
				if err != nil {
					t.Fatalf("nano=%v block %d: packet %d: %v", nano, bs, i, err)
				}
				if !bytes.Equal(data, pkts[i]) || !ci.Timestamp.Equal(cis[i].Timestamp) || ci.Length != cis[i].Length {
					t.Fatalf("nano=%v block %d: packet %d differs", nano, bs, i)
				}
			}
			if _, _, _, err := r.next(); err != io.EOF {
				t.Errorf("block %d: after the last packet: %v, want io.EOF", bs, err)
			}
			r.br.close()
		}
	}
}

// TestPcapReaderCut cuts a file at every length inside its last record: the
// records before are read, then ErrCutShort names where the last one starts.
func TestPcapReaderCut(t *testing.T) {
	file, pkts, _ := writeRandomPcap(t, 5, false)
	lastStart := len(file) - 16 - len(pkts[4])
	for cut := lastStart + 1; cut < len(file); cut++ {
		for _, bs := range []int{3, 4096} {
			r, err := newPcapReader(bytes.NewReader(file[:cut]), bs)
			if err != nil {
				t.Fatal(err)
			}
			for i := 0; i < 4; i++ {
				if _, _, _, err := r.next(); err != nil {
					t.Fatalf("cut %d: packet %d: %v", cut, i, err)
				}
			}
			_, _, off, err := r.next()
			if !errors.Is(err, ErrCutShort) || off != int64(lastStart) {
				t.Errorf("cut %d block %d: err %v at %d, want ErrCutShort at %d", cut, bs, err, off, lastStart)
			}
			r.br.close()
		}
	}
	if _, err := newPcapReader(bytes.NewReader([]byte("not a capture at all, really")), 4096); !errors.Is(err, errNotPcap) {
		t.Errorf("garbage: %v, want errNotPcap", err)
	}
}

// TestReadBatch reads files larger than a block (records straddle block
// ends) with batches of several sizes: the packets and their capture info
// must be those written, then io.EOF; a file cut inside its last record
// yields the records before it, then ErrCutShort where that record starts.
func TestReadBatch(t *testing.T) {
	dir := t.TempDir()
	for _, nano := range []bool{false, true} {
		file, pkts, cis := writeRandomPcap(t, 5000, nano)
		if len(file) < 2*pcapBlockSize {
			t.Fatalf("file of %d bytes: want more than two blocks", len(file))
		}
		lastStart := len(file) - 16 - len(pkts[len(pkts)-1])
		for _, cut := range []int{len(file), lastStart + 9} {
			name := filepath.Join(dir, "batch.pcap")
			if err := os.WriteFile(name, file[:cut], 0o600); err != nil {
				t.Fatal(err)
			}
			want := len(pkts)
			if cut < len(file) {
				want--
			}
			for _, size := range []int{1, 5, 64} {
				src, err := OpenFile(name)
				if err != nil {
					t.Fatal(err)
				}
				ps := make([]Packet, size)
				i := 0
				for {
					n, err := src.ReadBatch(ps)
					if err != nil {
						var fe *FormatError
						switch {
						case cut == len(file) && err == io.EOF:
						case cut < len(file) && errors.As(err, &fe) && errors.Is(err, ErrCutShort) && fe.Offset == int64(lastStart):
						default:
							t.Fatalf("nano=%v cut %d batch %d: after %d packets: %v", nano, cut, size, i, err)
						}
						break
					}
					if n < 1 || n > size {
						t.Fatalf("batch %d: %d packets", size, n)
					}
					for _, p := range ps[:n] {
						if i >= len(pkts) || !bytes.Equal(p.Data, pkts[i]) || !p.CI.Timestamp.Equal(cis[i].Timestamp) ||
							p.CI.Length != cis[i].Length || p.CI.CaptureLength != len(pkts[i]) || p.Link != layers.LinkTypeEthernet {
							t.Fatalf("nano=%v cut %d batch %d: packet %d differs", nano, cut, size, i)
						}
						i++
					}
				}
				if i != want {
					t.Errorf("nano=%v cut %d batch %d: %d packets, want %d", nano, cut, size, i, want)
				}
				src.Close()
			}
		}
	}
}
