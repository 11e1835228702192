package sensor

import (
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/tschsensor/tschsensor/detect"
)

// TestOrderer: records go on in capture-time order (then connection, then
// creation) once the watermark is a reorder delay past them; one that comes
// after later ones went on goes on at once and is counted late; the bound
// lets the oldest go early.
func TestOrderer(t *testing.T) {
	var got []uint64
	rec := &orderRecorder{seqs: &got}
	o := newOrderer(rec)
	t0 := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	ep := func(port uint16) detect.Endpoints {
		return detect.Endpoints{Client: netip.MustParseAddr("10.0.0.1"), Server: netip.MustParseAddr("10.0.0.2"), ClientPort: port, ServerPort: 445}
	}
	call := func(at time.Duration, port uint16, seq uint64) *detect.Call {
		return &detect.Call{Time: t0.Add(at - 5*time.Millisecond), ResponseTime: t0.Add(at), Responded: true, Endpoints: ep(port), Seq: seq}
	}
	o.Call(call(300*time.Millisecond, 2, 3))
	o.File(&detect.FileOp{Time: t0.Add(100 * time.Millisecond), Endpoints: ep(1), Seq: 1})
	o.Call(call(300*time.Millisecond, 1, 2)) // same time: the lower port first
	o.Call(call(2*time.Second, 1, 4))
	o.Release(t0.Add(time.Second)) // nothing is a second old yet
	if len(got) != 0 {
		t.Fatalf("released %v before the delay", got)
	}
	o.Release(t0.Add(1300 * time.Millisecond))
	if want := []uint64{1, 2, 3}; !slices.Equal(got, want) {
		t.Fatalf("released %v, want %v", got, want)
	}
	o.Call(call(200*time.Millisecond, 3, 5)) // finished before what went on
	if want := []uint64{1, 2, 3, 5}; !slices.Equal(got, want) || o.Late != 1 {
		t.Fatalf("late record: released %v (late %d)", got, o.Late)
	}
	o.Flush()
	if want := []uint64{1, 2, 3, 5, 4}; !slices.Equal(got, want) {
		t.Fatalf("after flush %v, want %v", got, want)
	}

	got = got[:0]
	o = newOrderer(rec)
	o.max = 2
	for i := range 4 {
		o.Call(call(time.Duration(4-i)*time.Second, 1, uint64(i)))
	}
	// The third pushes out the oldest held (2 s); the fourth is older
	// still, so it is late.
	if want := []uint64{2, 3}; !slices.Equal(got, want) || o.Late != 1 {
		t.Fatalf("past the bound released %v (late %d), want %v", got, o.Late, want)
	}
}

// TestOrdererRun: records that arrive in order skip the heap, and the
// order that comes out is still the heap's alone. Random arrivals, mostly
// in order with some earlier ones, random releases and a small bound, go
// through the orderer and through a reference that takes the least held
// record by itemLess each time; both must agree record by record.
func TestOrdererRun(t *testing.T) {
	r := rand.New(rand.NewPCG(15, 4))
	t0 := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	for round := range 220 {
		var got []uint64
		o := newOrderer(&orderRecorder{seqs: &got})
		o.max = 1 + r.IntN(64)
		items := 500
		if round >= 200 {
			// Long runs (the slide of run), few releases.
			o.max, items = 700+r.IntN(300), 2048
		}
		var want []uint64
		var held []orderItem
		var last time.Time
		var n uint64
		refPop := func() {
			i := 0
			for j := range held {
				if itemLess(&held[j], &held[i]) {
					i = j
				}
			}
			if held[i].t.After(last) {
				last = held[i].t
			}
			want = append(want, held[i].call.Seq)
			held = slices.Delete(held, i, i+1)
		}
		at := time.Duration(0)
		for i := range items {
			back := 3000
			if round >= 200 {
				back = 100 // mostly in order: long runs
			}
			switch r.IntN(10) {
			case 0:
				at -= time.Duration(r.IntN(back)) * time.Millisecond
			case 1:
			default:
				at += time.Duration(r.IntN(50)) * time.Millisecond
			}
			c := &detect.Call{Time: t0.Add(at), Endpoints: detect.Endpoints{ClientPort: uint16(r.IntN(3))}, Seq: uint64(i)}
			o.Call(c)
			if !last.IsZero() && c.Time.Before(last) {
				want = append(want, c.Seq)
			} else {
				n++
				held = append(held, orderItem{t: c.Time, ep: c.Endpoints, seq: c.Seq, n: n, call: c})
				if len(held) > o.max {
					refPop()
				}
			}
			if (round < 200 || i%700 == 699) && r.IntN(20) == 0 {
				wm := t0.Add(at - time.Duration(r.IntN(2000))*time.Millisecond)
				if r.IntN(4) == 0 {
					wm = t0.Add(at + 2*DefaultReorderDelay) // everything goes
				}
				o.Release(wm)
				for len(held) > 0 {
					i := 0
					for j := range held {
						if itemLess(&held[j], &held[i]) {
							i = j
						}
					}
					if held[i].t.After(wm.Add(-DefaultReorderDelay)) {
						break
					}
					refPop()
				}
			}
		}
		o.Flush()
		for len(held) > 0 {
			refPop()
		}
		if !slices.Equal(got, want) {
			t.Fatalf("round %d: orderer gave %v\nreference %v", round, got, want)
		}
	}
}
