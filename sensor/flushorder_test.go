package sensor

import (
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/tschsensor/tschsensor/detect"
)

// TestFlushOrder: whatever order a flush produces records in (the
// reassembler's map order), they come out in one order: time, endpoints,
// creation.
func TestFlushOrder(t *testing.T) {
	t0 := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	ep := func(c byte, port uint16) detect.Endpoints {
		return detect.Endpoints{Client: netip.AddrFrom4([4]byte{10, 0, 0, c}), Server: netip.AddrFrom4([4]byte{10, 0, 0, 99}), ClientPort: port, ServerPort: 445}
	}
	var items []flushItem
	for i := range 40 {
		at := t0.Add(time.Duration(i%4) * time.Second)
		if i%3 == 0 {
			items = append(items, flushItem{file: &detect.FileOp{Time: at, Endpoints: ep(byte(i%5), uint16(1000+i%7)), Seq: uint64(i)}})
		} else {
			items = append(items, flushItem{call: &detect.Call{Time: at, Endpoints: ep(byte(i%5), uint16(1000+i%7)), Seq: uint64(i)}})
		}
	}
	var first []uint64
	rng := rand.New(rand.NewPCG(3, 4))
	for run := range 20 {
		var got []uint64
		rec := &orderRecorder{seqs: &got}
		b := &flushBuffer{next: rec}
		b.hold()
		for _, k := range rng.Perm(len(items)) {
			if it := items[k]; it.call != nil {
				b.Call(it.call)
			} else {
				b.File(it.file)
			}
		}
		if len(got) != 0 {
			t.Fatal("records passed while held")
		}
		b.release()
		if run == 0 {
			first = got
			continue
		}
		if !slices.Equal(got, first) {
			t.Fatalf("run %d: order %v, first run %v", run, got, first)
		}
	}
	// Outside a flush records pass at once.
	var got []uint64
	b := &flushBuffer{next: &orderRecorder{seqs: &got}}
	b.Call(&detect.Call{Seq: 7})
	if len(got) != 1 {
		t.Error("record held outside a flush")
	}
}

type orderRecorder struct{ seqs *[]uint64 }

func (r *orderRecorder) Call(c *detect.Call)   { *r.seqs = append(*r.seqs, c.Seq) }
func (r *orderRecorder) File(f *detect.FileOp) { *r.seqs = append(*r.seqs, f.Seq) }
