package natsout

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func spoolTestRec(i int, size int) spoolRec {
	kind, id := "event", fmt.Sprintf("ev-%06d", i)
	if i%7 == 0 {
		kind, id = "metric", "" // metrics carry no id
	}
	return spoolRec{Kind: kind, Subject: "tschsensor.event.atsvc.netrjobadd", ID: id,
		Data: fmt.Appendf(nil, `{"i":%d,"pad":"%s"}`, i, strings.Repeat("p", size))}
}

func openTestSpool(t *testing.T, dir string, max int64) *spool {
	t.Helper()
	sp, err := openSpool(dir, max, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return sp
}

func appendN(t *testing.T, sp *spool, from, n, size int) {
	t.Helper()
	for i := from; i < from+n; i++ {
		if err := sp.Append(spoolTestRec(i, size)); err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
	}
}

// readAll reads and commits everything, checking records from..from+n-1
// come back in order.
func expectRecords(t *testing.T, sp *spool, from, n, size int, commit bool) {
	t.Helper()
	got := 0
	for {
		recs, err := sp.ReadBatch(97, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) == 0 {
			break
		}
		for _, r := range recs {
			want := spoolTestRec(from+got, size)
			if r.Kind != want.Kind || r.Subject != want.Subject || r.ID != want.ID || !bytes.Equal(r.Data, want.Data) {
				t.Fatalf("record %d: got %+v", from+got, r)
			}
			got++
		}
		if commit {
			if err := sp.Commit(); err != nil {
				t.Fatal(err)
			}
		}
	}
	if got != n {
		t.Fatalf("read %d records, want %d", got, n)
	}
}

func segmentCount(t *testing.T, dir string) int {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*"+spoolSegmentExt))
	if err != nil {
		t.Fatal(err)
	}
	return len(m)
}

func TestSpoolOrderAcrossSegments(t *testing.T) {
	dir := t.TempDir()
	sp := openTestSpool(t, dir, 8<<20) // 1 MiB segments
	appendN(t, sp, 0, 1500, 2000)
	if n := segmentCount(t, dir); n < 3 {
		t.Fatalf("%d segments for 3 MB of records, want several", n)
	}
	if recs, _ := sp.Len(); recs != 1500 {
		t.Fatalf("Len %d", recs)
	}
	expectRecords(t, sp, 0, 1500, 2000, true)
	if recs, bytes := sp.Len(); recs != 0 || bytes != 0 {
		t.Fatalf("after commit: %d records %d bytes", recs, bytes)
	}
	if n := segmentCount(t, dir); n != 1 {
		t.Fatalf("%d segments left after everything was acknowledged", n)
	}
	appendN(t, sp, 1500, 10, 10)
	expectRecords(t, sp, 1500, 10, 10, true)
	if err := sp.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestSpoolReopen: what was committed stays acknowledged across a restart,
// what was only read is read again.
func TestSpoolReopen(t *testing.T) {
	dir := t.TempDir()
	sp := openTestSpool(t, dir, 8<<20)
	appendN(t, sp, 0, 100, 50)
	recs, err := sp.ReadBatch(40, 1<<20)
	if err != nil || len(recs) != 40 {
		t.Fatalf("read %d: %v", len(recs), err)
	}
	if err := sp.Commit(); err != nil {
		t.Fatal(err)
	}
	if recs, _ := sp.ReadBatch(30, 1<<20); len(recs) != 30 {
		t.Fatalf("read %d", len(recs))
	}
	if err := sp.Close(); err != nil {
		t.Fatal(err)
	}
	sp = openTestSpool(t, dir, 8<<20)
	if n, _ := sp.Len(); n != 60 {
		t.Fatalf("reopened spool holds %d records, want 60", n)
	}
	expectRecords(t, sp, 40, 60, 50, false)
	sp.Rewind()
	expectRecords(t, sp, 40, 60, 50, true)
	sp.Close()
}

func TestSpoolTornTail(t *testing.T) {
	dir := t.TempDir()
	sp := openTestSpool(t, dir, 8<<20)
	appendN(t, sp, 0, 10, 100)
	seg := filepath.Join(dir, spoolSegName(sp.wpos.seg))
	sp.Close()
	good, _ := fileSize(seg)
	// A crash in the middle of a write: a header promising more than is there.
	f, err := os.OpenFile(seg, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte{0xff, 0x00, 0x00, 0x00, 1, 2, 3, 4, 1, 5})
	f.Close()
	sp = openTestSpool(t, dir, 8<<20)
	if sz, _ := fileSize(seg); sz != good {
		t.Fatalf("torn tail not cut: %d bytes, want %d", sz, good)
	}
	appendN(t, sp, 10, 5, 100)
	expectRecords(t, sp, 0, 15, 100, true)
	sp.Close()
}

func TestSpoolCorruptFrame(t *testing.T) {
	dir := t.TempDir()
	sp := openTestSpool(t, dir, 8<<20)
	appendN(t, sp, 0, 10, 100)
	var sixth int64 // offset of the sixth frame
	for i := range 5 {
		sixth += int64(len(mustEncode(t, spoolTestRec(i, 100))))
	}
	seg := filepath.Join(dir, spoolSegName(sp.wpos.seg))
	sp.Close()
	b, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	// Flip a payload byte of the sixth record: its CRC no longer matches
	// and the segment is cut there.
	off := sixth + spoolFrameHeader + 20
	b[off] ^= 0x55
	if err := os.WriteFile(seg, b, 0o600); err != nil {
		t.Fatal(err)
	}
	sp = openTestSpool(t, dir, 8<<20)
	expectRecords(t, sp, 0, 5, 100, true)
	sp.Close()
}

func mustEncode(t *testing.T, r spoolRec) []byte {
	t.Helper()
	var sp spool
	b, err := sp.encode(r)
	if err != nil {
		t.Fatal(err)
	}
	return append([]byte(nil), b...)
}

func TestSpoolBound(t *testing.T) {
	dir := t.TempDir()
	const max = 1 << 20
	sp := openTestSpool(t, dir, max)
	full := -1
	for i := range 1000 {
		err := sp.Append(spoolTestRec(i, 2000))
		if errors.Is(err, errSpoolFull) {
			full = i
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if full <= 0 {
		t.Fatalf("spool of %d bytes never filled", max)
	}
	if _, bytes := sp.Len(); bytes > max {
		t.Fatalf("spool holds %d bytes, bound %d", bytes, max)
	}
	// Acknowledging frees room.
	if recs, _ := sp.ReadBatch(100, 1<<20); len(recs) != 100 {
		t.Fatalf("read %d", len(recs))
	}
	if err := sp.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := sp.Append(spoolTestRec(full, 2000)); err != nil {
		t.Fatalf("append after commit: %v", err)
	}
	// A record too large for the format is refused, not written.
	if err := sp.Append(spoolRec{Subject: strings.Repeat("s", 70000)}); err == nil {
		t.Fatal("oversized subject accepted")
	}
	sp.Close()
}

func TestSpoolLocked(t *testing.T) {
	dir := t.TempDir()
	sp := openTestSpool(t, dir, 8<<20)
	if _, err := openSpool(dir, 8<<20, slog.New(slog.DiscardHandler)); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second open of a spool in use: %v", err)
	}
	sp.Close()
	sp = openTestSpool(t, dir, 8<<20)
	sp.Close()
}

// FuzzSpoolSegment opens a spool whose only segment holds arbitrary bytes:
// opening must not fail or panic, and what it reads back must re-encode to
// frames that fit in the file it came from.
func FuzzSpoolSegment(f *testing.F) {
	var seed spool
	var b []byte
	for i := range 4 {
		fr, _ := seed.encode(spoolTestRec(i, i*10))
		b = append(b, fr...)
	}
	f.Add(b)
	f.Add(b[:len(b)-3])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, spoolSegName(1)), data, 0o600); err != nil {
			t.Fatal(err)
		}
		sp, err := openSpool(dir, 8<<20, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		defer sp.Close()
		n, size := sp.Len()
		if size > int64(len(data)) {
			t.Fatalf("spool claims %d bytes from a %d byte file", size, len(data))
		}
		var total int64
		var got int64
		for {
			recs, err := sp.ReadBatch(64, 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			if len(recs) == 0 {
				break
			}
			for _, r := range recs {
				total += int64(len(mustEncode(t, r)))
			}
			got += int64(len(recs))
		}
		if got != n || total != size {
			t.Fatalf("Len says %d records/%d bytes, read %d/%d", n, size, got, total)
		}
	})
}
