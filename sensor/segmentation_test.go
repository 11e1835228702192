package sensor

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unsafe"

	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"

	"github.com/tschsensor/tschsensor/sensor/source"
)

// Segmentation tests after test2json's: the same capture cut into other TCP
// segment sizes must give the same events.

// segSizes are the segment sizes a capture is rewritten into: single bytes
// (every header split everywhere), an odd size that straddles every field,
// and the classic minimum MSS.
var segSizes = []int{1, 7, 536}

// segOffset returns where sub starts within buf (sub aliases buf).
func segOffset(buf, sub []byte) int {
	return int(uintptr(unsafe.Pointer(unsafe.SliceData(sub))) - uintptr(unsafe.Pointer(unsafe.SliceData(buf))))
}

// resegment rewrites every TCP packet whose payload is longer than size into
// packets of at most size payload bytes: same link, IP and TCP headers,
// sequence numbers advanced, IP lengths fixed, FIN on the last piece only,
// the original timestamp on every piece. Other packets are kept as they are.
func resegment(t testing.TB, pkts []plPacket, size int) []plPacket {
	t.Helper()
	var out []plPacket
	var f frame
	for _, p := range pkts {
		if decodeFrame(p.data, p.link, &f) != decTCP || f.fragment || len(f.tcp) < 20 {
			out = append(out, p)
			continue
		}
		tcpOff := segOffset(p.data, f.tcp)
		hl := int(f.tcp[12]>>4) * 4
		flags := f.tcp[13]
		if hl < 20 || hl > len(f.tcp) || len(f.tcp)-hl <= size || flags&tcpSYN != 0 {
			out = append(out, p)
			continue
		}
		ipOff := segOffset(p.data, f.src) - 12
		if f.v6 {
			ipOff = segOffset(p.data, f.src) - 8
		}
		head := p.data[:tcpOff+hl]
		payload := f.tcp[hl:]
		seq := binary.BigEndian.Uint32(f.tcp[4:])
		for i := 0; i < len(payload); i += size {
			chunk := payload[i:min(i+size, len(payload))]
			b := make([]byte, 0, len(head)+len(chunk))
			b = append(append(b, head...), chunk...)
			if f.v6 {
				binary.BigEndian.PutUint16(b[ipOff+4:], uint16(len(b)-ipOff-40))
			} else {
				binary.BigEndian.PutUint16(b[ipOff+2:], uint16(len(b)-ipOff))
			}
			binary.BigEndian.PutUint32(b[tcpOff+4:], seq+uint32(i))
			if i+size < len(payload) {
				b[tcpOff+13] &^= tcpFIN
			}
			ci := p.ci
			ci.CaptureLength, ci.Length = len(b), len(b)
			out = append(out, plPacket{b, ci, p.link})
		}
	}
	return out
}

// writePcap writes packets (one link type) to a classic nanosecond pcap.
func writePcap(t testing.TB, name string, pkts []plPacket) {
	t.Helper()
	fh, err := os.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	w := pcapgo.NewWriterNanos(fh)
	link := layers.LinkTypeEthernet
	if len(pkts) > 0 {
		link = pkts[0].link
	}
	if err := w.WriteFileHeader(1<<18, link); err != nil {
		t.Fatal(err)
	}
	for _, p := range pkts {
		if p.link != link {
			t.Skipf("capture mixes link types %d and %d: not representable as one pcap", link, p.link)
		}
		if err := w.WritePacket(p.ci, p.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := fh.Close(); err != nil {
		t.Fatal(err)
	}
}

// normalise drops what legitimately depends on segmentation (frame numbers)
// or is derived from it (event ids and the alerts' lists of them).
func normalise(t testing.TB, lines []string) []string {
	t.Helper()
	var out []string
	for _, l := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("bad JSON line %q: %v", l, err)
		}
		if ev, ok := m["event"].(map[string]any); ok {
			delete(ev, "id")
		}
		if p, ok := m["pcap"].(map[string]any); ok {
			delete(p, "frames")
			delete(p, "file")
		}
		if r, ok := m["related"].(map[string]any); ok {
			delete(r, "events")
		}
		b, err := json.Marshal(m) // maps marshal with sorted keys
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, string(b))
	}
	return out
}

func TestResegmentedCaptures(t *testing.T) {
	for _, name := range plPositives {
		t.Run(name, func(t *testing.T) {
			path := plShared(t, name)
			want, res := plReplay(t, Options{}, path)
			if len(want) == 0 || len(res.Errors) > 0 {
				t.Fatalf("baseline: %d lines, errors %v", len(want), res.Errors)
			}
			wantN := normalise(t, want)
			pkts := plLoad(t, path)
			for _, size := range segSizes {
				if size == 1 && testing.Short() && len(pkts) > 1000 {
					continue
				}
				t.Run(fmt.Sprintf("segments_of_%d", size), func(t *testing.T) {
					seg := resegment(t, pkts, size)
					if len(seg) <= len(pkts) {
						t.Fatalf("resegmenting into %d bytes made %d packets of %d", size, len(seg), len(pkts))
					}
					tmp := filepath.Join(t.TempDir(), strings.TrimSuffix(name, filepath.Ext(name))+".pcap")
					writePcap(t, tmp, seg)
					got, res := plReplay(t, Options{}, tmp)
					for _, err := range res.Errors {
						t.Errorf("replay: %v", err)
					}
					gotN := normalise(t, got)
					if len(gotN) != len(wantN) {
						t.Errorf("%d lines, want %d", len(gotN), len(wantN))
					}
					for i := 0; i < min(len(gotN), len(wantN)); i++ {
						if gotN[i] != wantN[i] {
							t.Errorf("line %d differs:\n got %.600s\nwant %.600s", i+1, gotN[i], wantN[i])
						}
					}
				})
			}
		})
	}
}

// TestCutCapture replays a capture whose last record is cut in the middle,
// as when copied from a running tcpdump: the events before the cut are
// still written and the error names the file and the record's byte offset.
func TestCutCapture(t *testing.T) {
	path := plShared(t, "A_suricata-verify__dcerpc-smb-ctxid.pcap")
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// Classic pcap: 24-byte file header, then 16-byte record headers.
	order := binary.ByteOrder(binary.LittleEndian)
	if binary.BigEndian.Uint32(raw) == 0xa1b2c3d4 || binary.BigEndian.Uint32(raw) == 0xa1b23c4d {
		order = binary.BigEndian
	}
	var starts []int
	for off := 24; off+16 <= len(raw); {
		starts = append(starts, off)
		off += 16 + int(order.Uint32(raw[off+8:]))
	}
	// Frame 28 (index 27) follows the NetrJobAdd response (frame 26).
	const cutFrame = 28
	for _, into := range []int{5, 16 + 10} { // inside the record header, inside the packet data
		t.Run(fmt.Sprintf("record_%d_plus_%d", cutFrame, into), func(t *testing.T) {
			start := starts[cutFrame-1]
			tmp := filepath.Join(t.TempDir(), "cut.pcap")
			if err := os.WriteFile(tmp, raw[:start+into], 0o644); err != nil {
				t.Fatal(err)
			}
			lines, res := plReplay(t, Options{}, tmp)
			if len(res.Errors) != 1 {
				t.Fatalf("errors %v, want one", res.Errors)
			}
			err := res.Errors[0]
			var fe *source.FormatError
			if !errors.As(err, &fe) || !errors.Is(err, source.ErrCutShort) {
				t.Fatalf("error %v (%T) is not a cut-short source.FormatError", err, err)
			}
			if fe.Offset != int64(start) || !strings.Contains(err.Error(), fmt.Sprintf("byte offset %d", start)) {
				t.Errorf("error %q, want byte offset %d", err, start)
			}
			if res.Stats.Packets != cutFrame-1 {
				t.Errorf("%d packets read, want %d", res.Stats.Packets, cutFrame-1)
			}
			var jobAdd int
			for _, l := range lines {
				if strings.Contains(l, `"operation":"NetrJobAdd"`) {
					jobAdd++
				}
			}
			if jobAdd != 2 { // the call event and its alert
				t.Errorf("%d NetrJobAdd lines before the cut, want 2:\n%s", jobAdd, strings.Join(lines, "\n"))
			}
		})
	}
}

// TestCutCapturePcapng cuts a pcapng file inside its last packet block.
func TestCutCapturePcapng(t *testing.T) {
	ng := plShared(t, "A_hangchuanin__atexec.pcapng")
	raw, err := os.ReadFile(ng)
	if err != nil {
		t.Fatal(err)
	}
	// Walk the blocks (type, total length; this file is little-endian) to
	// the last Enhanced Packet Block.
	last := -1
	for off := 0; off+8 <= len(raw); {
		typ, n := binary.LittleEndian.Uint32(raw[off:]), int(binary.LittleEndian.Uint32(raw[off+4:]))
		if n < 12 {
			t.Fatalf("bad block length %d at %d", n, off)
		}
		if typ == 6 {
			last = off
		}
		off += n
	}
	want, _ := plReplay(t, Options{}, ng)
	cut := filepath.Join(t.TempDir(), "cut.pcapng")
	if err := os.WriteFile(cut, raw[:last+40], 0o644); err != nil {
		t.Fatal(err)
	}
	got, res := plReplay(t, Options{}, cut)
	if len(res.Errors) != 1 || !errors.Is(res.Errors[0], source.ErrCutShort) {
		t.Fatalf("errors %v, want one source.ErrCutShort naming byte offset %d", res.Errors, last)
	}
	if !strings.Contains(res.Errors[0].Error(), fmt.Sprintf("byte offset %d", last)) {
		t.Errorf("error %q does not name the cut block's offset %d", res.Errors[0], last)
	}
	if !bytes.Equal([]byte(strings.Join(normalise(t, got), "\n")), []byte(strings.Join(normalise(t, want), "\n"))) {
		t.Errorf("cutting the last packet changed the events")
	}
}
