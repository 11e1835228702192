package sensor

import (
	"context"
	"fmt"
	"io"
	"os"
	"testing"

	"github.com/tschsensor/tschsensor/detect"
	"github.com/tschsensor/tschsensor/sensor/output"
	"github.com/tschsensor/tschsensor/sensor/source"
)

// benchCapture is the capture the worker benchmarks replay from memory:
// $TSCHSENSOR_BENCH_PCAP (scripts/make-smb-capture.sh makes a large one) or
// the shared corpus's busiest SMB2 capture.
func benchCapture(tb testing.TB) (string, []plPacket, int64) {
	tb.Helper()
	name := os.Getenv("TSCHSENSOR_BENCH_PCAP")
	if name == "" {
		name = plShared(tb, "C_elcabezzonn__more_netshare.pcap")
	}
	pkts := plLoad(tb, name)
	var n int64
	for _, p := range pkts {
		n += int64(len(p.data))
	}
	return name, pkts, n
}

// discardRecorder drops records: the benchmark measures the worker.
type discardRecorder struct{ calls, files int }

func (r *discardRecorder) Call(*detect.Call)   { r.calls++ }
func (r *discardRecorder) File(*detect.FileOp) { r.files++ }

// BenchmarkWorkerPacket runs every packet of the capture through a fresh
// worker (decode, TCP reassembly, SMB and DCE-RPC state) per iteration.
func BenchmarkWorkerPacket(b *testing.B) {
	_, pkts, size := benchCapture(b)
	b.SetBytes(size)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		w := NewWorker(Options{}, &discardRecorder{}, nil)
		w.SetFile("bench")
		for i := range pkts {
			w.Packet(pkts[i].data, pkts[i].ci, pkts[i].link)
		}
		w.Flush()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(int64(b.N)*int64(len(pkts))), "ns/packet")
}

// BenchmarkDecodeFrame measures link, VLAN and IP decoding alone.
func BenchmarkDecodeFrame(b *testing.B) {
	_, pkts, size := benchCapture(b)
	b.SetBytes(size)
	b.ReportAllocs()
	var f frame
	b.ResetTimer()
	for b.Loop() {
		for i := range pkts {
			decodeFrame(pkts[i].data, pkts[i].link, &f)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(int64(b.N)*int64(len(pkts))), "ns/packet")
}

// TestDecodeFrameAllocs pins decodeFrame at zero allocations per packet and
// reports the whole worker's average, which reassembly and the state
// machines make non-zero (new connections, buffered messages, records).
func TestDecodeFrameAllocs(t *testing.T) {
	name, pkts, _ := benchCapture(t)
	var f frame
	tcp := 0
	for i := range pkts {
		if decodeFrame(pkts[i].data, pkts[i].link, &f) == decTCP {
			tcp++
		}
	}
	if tcp == 0 {
		t.Fatalf("%s: no TCP packets", name)
	}
	allocs := testing.AllocsPerRun(5, func() {
		for i := range pkts {
			decodeFrame(pkts[i].data, pkts[i].link, &f)
		}
	})
	if allocs != 0 {
		t.Errorf("decodeFrame: %.1f allocations for %d packets, want 0", allocs, len(pkts))
	}
	perRun := testing.AllocsPerRun(2, func() {
		w := NewWorker(Options{}, &discardRecorder{}, nil)
		for i := range pkts {
			w.Packet(pkts[i].data, pkts[i].ci, pkts[i].link)
		}
		w.Flush()
	})
	t.Logf("%s: worker %.2f allocations per packet (%d packets, %d TCP)", name, perRun/float64(len(pkts)), len(pkts), tcp)
}

// BenchmarkReplay is the replay subcommand's path without output: reading
// the file (block reader, gzip when compressed) and the workers: one, or a
// dispatcher, two workers and the merger.
func BenchmarkReplay(b *testing.B) {
	name, pkts, _ := benchCapture(b)
	fi, err := os.Stat(name)
	if err != nil {
		b.Fatal(err)
	}
	for _, n := range []int{1, 2} {
		b.Run(fmt.Sprintf("workers=%d", n), func(b *testing.B) {
			b.SetBytes(fi.Size())
			b.ReportAllocs()
			for b.Loop() {
				res := Replay(context.Background(), ReplayConfig{Output: output.NewOutput(), Workers: n}, []string{name})
				if len(res.Errors) > 0 || res.Stats.Packets != uint64(len(pkts)) {
					b.Fatalf("replay: %d packets, errors %v", res.Stats.Packets, res.Errors)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(int64(b.N)*int64(len(pkts))), "ns/packet")
		})
	}
}

// BenchmarkReadCapture reads the capture and decodes nothing: the floor of
// replay, as tcpdump -r FILE -w /dev/null is tcpdump's.
func BenchmarkReadCapture(b *testing.B) {
	name, pkts, _ := benchCapture(b)
	fi, err := os.Stat(name)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(fi.Size())
	b.ReportAllocs()
	for b.Loop() {
		src, err := source.OpenFile(name)
		if err != nil {
			b.Fatal(err)
		}
		n := 0
		for {
			_, _, _, err := src.ReadPacket()
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			n++
		}
		src.Close()
		if n != len(pkts) {
			b.Fatalf("%d packets, want %d", n, len(pkts))
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(int64(b.N)*int64(len(pkts))), "ns/packet")
}
