package sensor

import (
	"bytes"
	"math/rand/v2"
	"path/filepath"
	"testing"
)

// TestMutatedCapturesNoPanic replays the project's captures with bytes
// changed, frames cut and segments dropped or repeated (seeded, so a failure
// repeats), at small limits so that the bounds and the flow table's eviction
// are crossed too: no panic, every packet counted.
func TestMutatedCapturesNoPanic(t *testing.T) {
	files, _ := filepath.Glob("../pcaps/*.pcap")
	if len(files) == 0 {
		t.Skip("no captures in ../pcaps")
	}
	rng := rand.New(rand.NewPCG(15, 13))
	for _, f := range files {
		pkts := plLoad(t, f)
		for round := range 8 {
			opt := Options{PanicHook: func(r any) { t.Fatalf("%s round %d: panic: %v", filepath.Base(f), round, r) }}
			if round%2 == 1 {
				opt.MaxFlows, opt.MaxMessage, opt.MaxStub, opt.MemoryBudget = 4, 4096, stubTail, minMemoryBudget
				opt.MaxCalls, opt.MaxPending = 2, 2
			}
			w := NewWorker(opt, &discardRecorder{}, nil)
			n := 0
			for _, p := range pkts {
				data := bytes.Clone(p.data)
				ci := p.ci
				switch r := rng.IntN(100); {
				case r < 3:
					continue // dropped
				case r < 6:
					w.Packet(data, ci, p.link) // repeated
					n++
				case r < 20 && len(data) > 54:
					for range 1 + rng.IntN(4) {
						data[54+rng.IntN(len(data)-54)] = byte(rng.Uint32())
					}
				case r < 24 && len(data) > 1:
					data = data[:rng.IntN(len(data))]
					ci.CaptureLength = len(data)
				case r < 26:
					data[rng.IntN(len(data))] ^= 0xff // headers too
				}
				w.Packet(data, ci, p.link)
				n++
			}
			w.Flush()
			if got := w.Stats().Packets; got != uint64(n) {
				t.Fatalf("%s round %d: %d packets in, %d counted", filepath.Base(f), round, n, got)
			}
		}
	}
}
