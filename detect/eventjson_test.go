package detect

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tschsensor/tschsensor/dissect"
)

// jsonStrings are the strings the random events draw from: what
// encoding/json escapes (quotes, backslashes, control bytes, HTML
// characters, invalid UTF-8, the JSONP separators) next to plain text.
var jsonStrings = []string{
	"", "a", "cmd.exe", `C:\Windows\Temp\x.tmp`, `say "hi"`, "<script>&amp;</script>", "tab\there\nnl\rcr",
	"\b\f\x00\x01\x1f\x7f", "\xff\xfe", "caf\u00e9 \u4e2d\u6587 \U0001F600", "line\u2028sep\u2029", "\xe2\x80", "\xed\xa0\x80",
	"trailing\\", "\u00a0\u0085", "ITaskSchedulerService", "0x0000000000000001",
}

// fillRandom sets every exported field of v at random: zero or not, nil
// or not, empty or not, so that each omitempty and each field is tried.
func fillRandom(r *rand.Rand, v reflect.Value, depth int) {
	switch v.Kind() {
	case reflect.String:
		if r.IntN(8) == 0 {
			b := make([]byte, r.IntN(12))
			for i := range b {
				b[i] = byte(r.Uint32())
			}
			v.SetString(string(b))
			return
		}
		v.SetString(jsonStrings[r.IntN(len(jsonStrings))])
	case reflect.Bool:
		v.SetBool(r.IntN(2) == 0)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		switch r.IntN(4) {
		case 0:
			v.SetInt(0)
		case 1:
			v.SetInt(-r.Int64N(1 << 40))
		default:
			v.SetInt(r.Int64N(1 << 20))
		}
		if v.OverflowInt(v.Int()) {
			v.SetInt(int64(int8(v.Int())))
		}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		switch r.IntN(4) {
		case 0:
			v.SetUint(0)
		case 1:
			v.SetUint(math.MaxUint64 >> (64 - v.Type().Bits()))
		default:
			v.SetUint(r.Uint64() >> (64 - v.Type().Bits()))
		}
	case reflect.Float32, reflect.Float64:
		v.SetFloat([]float64{0, 1, 0.5, 1e21, 1e-7, -3.25}[r.IntN(6)])
	case reflect.Pointer:
		if depth > 6 || r.IntN(3) == 0 {
			return
		}
		p := reflect.New(v.Type().Elem())
		fillRandom(r, p.Elem(), depth+1)
		v.Set(p)
	case reflect.Slice:
		switch n := r.IntN(5); {
		case depth > 6 || n == 0:
		case n == 1:
			v.Set(reflect.MakeSlice(v.Type(), 0, 0))
		default:
			s := reflect.MakeSlice(v.Type(), n-1, n-1)
			for i := range n - 1 {
				fillRandom(r, s.Index(i), depth+1)
			}
			v.Set(s)
		}
	case reflect.Struct:
		if v.Type() == reflect.TypeFor[time.Time]() {
			v.Set(reflect.ValueOf(time.Unix(r.Int64N(1<<34), r.Int64N(1e9)).UTC()))
			return
		}
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				fillRandom(r, v.Field(i), depth+1)
			}
		}
	case reflect.Interface:
		// Only Event's Tsch and Metric: filled by randomEvent.
	}
}

// randomEvent returns an event with every field drawn at random; Tsch is
// sometimes a TschInfo without sub-objects (the encoder's own path),
// sometimes a full one, a typed nil or absent; Metric a map or absent.
func randomEvent(r *rand.Rand) *Event {
	var ev Event
	fillRandom(r, reflect.ValueOf(&ev).Elem(), 0)
	switch r.IntN(5) {
	case 0:
	case 1:
		ev.Tsch = (*dissect.TschInfo)(nil)
	case 2:
		var t dissect.TschInfo
		fillRandom(r, reflect.ValueOf(&t).Elem(), 1)
		ev.Tsch = &t
	default:
		var t dissect.TschInfo
		fillRandom(r, reflect.ValueOf(&t).Elem(), 1)
		ev.Tsch = &dissect.TschInfo{Operation: t.Operation, Flags: t.Flags, Version: t.Version, MissedRuns: t.MissedRuns,
			ReturnCode: t.ReturnCode, ReturnName: t.ReturnName, DecodeError: t.DecodeError}
	}
	if r.IntN(4) == 0 {
		ev.Metric = map[string]any{"packets": uint64(r.Uint32()), "rate": 0.25, "note": "<&>"}
	}
	return &ev
}

func checkAppendJSON(t *testing.T, ev *Event) {
	t.Helper()
	want, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ev.AppendJSON([]byte("prefix"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got[len("prefix"):], want) {
		t.Fatalf("AppendJSON differs from json.Marshal\n got %s\nwant %s", got[len("prefix"):], want)
	}
}

// TestAppendJSONMatchesMarshal: the hand-written encoder writes exactly
// the bytes of encoding/json, for random events that set or leave out
// every field (a field added to a struct and not to the encoder fails
// here), and for the events of the detector's own tests.
func TestAppendJSONMatchesMarshal(t *testing.T) {
	r := rand.New(rand.NewPCG(15, 1))
	for range 20000 {
		checkAppendJSON(t, randomEvent(r))
	}
	var evs []*Event
	d := New(Options{Observer: "o<&>"}, func(e *Event) { evs = append(evs, e) })
	d.Call(newCall(0, dissect.IfaceITaskSchedulerService, opRegister, overTCP(),
		task(`\Updater`, &dissect.TaskInfo{Command: "cmd.exe", Arguments: "/c whoami > C:\\x & y"})))
	d.Flush()
	if len(evs) < 2 {
		t.Fatalf("%d records, want an event and an alert", len(evs))
	}
	for _, ev := range evs {
		checkAppendJSON(t, ev)
	}
}

// FuzzAppendJSON: the same comparison over the fuzzer's seeds and one
// string it chooses, put in every string field.
func FuzzAppendJSON(f *testing.F) {
	for _, s := range jsonStrings {
		f.Add(uint64(len(s)), s)
	}
	f.Fuzz(func(t *testing.T, seed uint64, s string) {
		ev := randomEvent(rand.New(rand.NewPCG(seed, 2)))
		setStrings(reflect.ValueOf(ev).Elem(), s)
		checkAppendJSON(t, ev)
	})
}

func setStrings(v reflect.Value, s string) {
	switch v.Kind() {
	case reflect.String:
		v.SetString(s)
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			setStrings(v.Elem(), s)
		}
	case reflect.Slice:
		for i := range v.Len() {
			setStrings(v.Index(i), s)
		}
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				setStrings(v.Field(i), s)
			}
		}
	}
}

// BenchmarkEventJSON compares encoding/json with AppendJSON on the event
// of an unanswered MS-TSCH call (what a flood of unanswered requests
// produces, one per request) and on a registration with its task.
func BenchmarkEventJSON(b *testing.B) {
	unanswered := newCall(0, dissect.IfaceITaskSchedulerService, 0, overTCP())
	unanswered.Tsch, unanswered.Responded = &dissect.TschInfo{Operation: "SchRpcHighestVersion"}, false
	unanswered.PcapFile, unanswered.Frames = "rpcreq-100k.pcap", []uint64{6}
	register := newCall(0, dissect.IfaceITaskSchedulerService, opRegister, overTCP(),
		task(`\Updater`, &dissect.TaskInfo{Command: "cmd.exe", Arguments: "/c whoami"}))
	for _, tc := range []struct {
		name string
		c    *Call
	}{{"unanswered", unanswered}, {"register", register}} {
		ev := CallEvent(tc.c, "bench")
		b.Run(tc.name+"/encoding-json", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := json.Marshal(ev); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(tc.name+"/append", func(b *testing.B) {
			b.ReportAllocs()
			var buf []byte
			for b.Loop() {
				var err error
				if buf, err = ev.AppendJSON(buf[:0]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestEventFormatters: the hand-written time, session id and subject
// formatters against the library calls they replace.
func TestEventFormatters(t *testing.T) {
	r := rand.New(rand.NewPCG(15, 3))
	for i := range 20000 {
		tm := time.Unix(r.Int64N(1<<36)-1<<35, r.Int64N(1e9)).In(time.FixedZone("x", int(r.Int32N(50000))-25000))
		if i%100 == 0 {
			tm = tm.AddDate(r.IntN(20000)-10000, 0, 0)
		}
		if got, want := rfc3339(tm), tm.UTC().Format("2006-01-02T15:04:05.000000000Z07:00"); got != want {
			t.Fatalf("rfc3339(%v) = %s, want %s", tm, got, want)
		}
		v := r.Uint64() >> r.IntN(64)
		if got, want := string(appendHex16(nil, v)), fmt.Sprintf("0x%016x", v); got != want {
			t.Fatalf("appendHex16(%d) = %s, want %s", v, got, want)
		}
		ev := randomEvent(r)
		ev.Event.Kind = []string{"event", "alert", "metric", ""}[r.IntN(4)]
		if ev.DCERPC != nil && r.IntN(2) == 0 {
			ev.DCERPC.Interface.Name = []string{"", "ITaskSchedulerService", "ATSvc", "ÉCOLE"}[r.IntN(4)]
		}
		if got, want := ev.Subject(), subjectReference(ev); got != want {
			t.Fatalf("Subject() = %q, want %q", got, want)
		}
	}
}

// subjectReference is Subject as it was written before it was made to
// allocate once.
func subjectReference(e *Event) string {
	switch e.Event.Kind {
	case "alert":
		if e.Rule != nil {
			return "alert." + e.Rule.ID
		}
		return "alert.unknown"
	case "metric":
		return "stats"
	}
	iface, op := "unknown", "unknown"
	if e.DCERPC != nil {
		if e.DCERPC.Interface.Name != "" {
			iface = strings.ToLower(e.DCERPC.Interface.Name)
		}
		if e.DCERPC.Operation != "" {
			op = strings.ToLower(e.DCERPC.Operation)
		} else {
			op = fmt.Sprintf("opnum%d", e.DCERPC.Opnum)
		}
	}
	return "event." + iface + "." + op
}
