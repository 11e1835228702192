package testpcap

import (
	"path/filepath"
	"testing"
	"time"
)

// TestCopies: n copies hold n times the packets, each copy later by gap.
func TestCopies(t *testing.T) {
	src := "../../pcaps/impacket-atexec-smb2-clear.pcap"
	dst := filepath.Join(t.TempDir(), "c.pcap")
	if err := Copies(src, dst, 3, time.Hour); err != nil {
		t.Fatal(err)
	}
	count := func(name string) (int, time.Time, time.Time) {
		pkts, _, err := Read(name)
		if err != nil || len(pkts) == 0 {
			t.Fatalf("%s: %d packets, %v", name, len(pkts), err)
		}
		return len(pkts), pkts[0].Info.Timestamp, pkts[len(pkts)-1].Info.Timestamp
	}
	n, f0, l0 := count(src)
	m, f1, l1 := count(dst)
	if m != 3*n || !f1.Equal(f0) || !l1.Equal(l0.Add(2*time.Hour)) {
		t.Fatalf("%d packets %v..%v from %d packets %v..%v", m, f1, l1, n, f0, l0)
	}
	if err := Copies(src, dst, 0, time.Hour); err == nil {
		t.Fatal("0 copies accepted")
	}
}
