//go:build linux

package source

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"golang.org/x/sys/unix"
)

// testNetns creates a network namespace holding a veth pair (tx0, rx0),
// both up; the test's traffic never leaves it. It skips unless root.
func testNetns(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates a network namespace with a veth pair")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs iproute2 (ip)")
	}
	ns := fmt.Sprintf("tschafp%d", os.Getpid())
	run := func(args ...string) {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Skipf("ip %v: %v: %s", args, err, out)
		}
	}
	run("netns", "add", ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	run("-n", ns, "link", "add", "name", "tx0", "mtu", "65000", "type", "veth", "peer", "name", "rx0", "mtu", "65000")
	run("-n", ns, "link", "set", "tx0", "up")
	run("-n", ns, "link", "set", "rx0", "up")
	return ns
}

// inNetns runs f on a thread switched into the namespace: sockets made
// there belong to it for good.
func inNetns(t *testing.T, ns string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread()
		// The thread is left locked, so it dies with the goroutine rather
		// than go back to the pool in the wrong namespace.
		fd, err := unix.Open("/run/netns/"+ns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Errorf("open netns: %v", err)
			return
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			t.Errorf("setns: %v", err)
			return
		}
		f()
	}()
	<-done
}

// injector sends frames out of tx0 with a packet socket.
type injector struct{ fd int }

func newInjector(t *testing.T) *injector {
	t.Helper()
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	idx := ifindexOf(t, fd, "tx0")
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: idx}); err != nil {
		t.Fatal(err)
	}
	return &injector{fd}
}

func ifindexOf(t *testing.T, fd int, name string) int {
	t.Helper()
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFINDEX, ifr); err != nil {
		t.Fatalf("ifindex of %s: %v", name, err)
	}
	return int(ifr.Uint32())
}

func (in *injector) send(t *testing.T, frames [][]byte) {
	t.Helper()
	for i, f := range frames {
		if _, err := unix.Write(in.fd, f); err != nil {
			t.Fatalf("send frame %d (%d bytes): %v", i, len(f), err)
		}
	}
}

// collectRing reads from socks until want packets arrived; the deadline only
// turns a hang into a failure.
func collectRing(t *testing.T, socks []*AFPacket, want int) [][][]byte {
	t.Helper()
	got := make([][][]byte, len(socks))
	n := 0
	deadline := time.Now().Add(10 * time.Second)
	for n < want && time.Now().Before(deadline) {
		for i, s := range socks {
			for {
				data, ci, ok := s.Next()
				if !ok {
					break
				}
				if ci.CaptureLength != len(data) {
					t.Errorf("CaptureLength %d for %d bytes", ci.CaptureLength, len(data))
				}
				// The namespace's own kernel traffic (IPv6 neighbour and
				// multicast listener messages when links come up) is noise.
				if tcp, vlan := isTCP(data); !tcp && !vlan {
					continue
				}
				got[i] = append(got[i], append([]byte(nil), data...))
				n++
			}
		}
		if err := WaitAFPackets(socks, 20*time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
	if n != want {
		t.Fatalf("received %d packets, want %d", n, want)
	}
	return got
}

func tcpFrames(t *testing.T) [][]byte {
	var out [][]byte
	for _, f := range capturedFrames(t) {
		if tcp, _ := isTCP(f); tcp {
			out = append(out, f)
		}
	}
	if len(out) == 0 {
		t.Skip("no TCP frames in ../pcaps")
	}
	return out
}

// TestAFPacketRing: frames sent on one end of a veth come out of the ring
// on the other byte for byte, in order, non-TCP ones filtered out, VLAN
// tags put back, and the kernel counters see them.
func TestAFPacketRing(t *testing.T) {
	ns := testNetns(t)
	frames := capturedFrames(t)
	var want [][]byte
	for _, f := range frames {
		if tcp, vlan := isTCP(f); tcp || vlan {
			want = append(want, f)
		}
	}
	var sock *AFPacket
	var in *injector
	inNetns(t, ns, func() {
		var err error
		// Small blocks so that several fill up and are handed back; enough of
		// them to hold every frame of pcaps/ (all are sent before any is read).
		sock, err = OpenAFPacket(AFPacketConfig{Iface: "rx0", BlockSize: 1 << 16, NumBlocks: 64, BlockTimeout: 5 * time.Millisecond, Promisc: true})
		if err != nil {
			t.Error(err)
			return
		}
		in = newInjector(t)
	})
	if sock == nil || in == nil {
		t.FailNow()
	}
	defer sock.Close()
	if sock.LinkType() != layers.LinkTypeEthernet {
		t.Errorf("link type %v", sock.LinkType())
	}
	in.send(t, frames)
	got := collectRing(t, []*AFPacket{sock}, len(want))[0]
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Errorf("packet %d differs:\n got %x\nwant %x", i, got[i], want[i])
			break
		}
	}
	st, err := sock.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.Packets < uint64(len(want)) || st.Drops != 0 {
		t.Errorf("kernel stats %+v, want ≥ %d packets and no drops", st, len(want))
	}
	if err := sock.Close(); err != nil {
		t.Fatal(err)
	}
	if st2, err := sock.Stats(); err != nil || st2.Packets < st.Packets {
		t.Errorf("stats after close %+v, %v", st2, err)
	}
}

// TestAFPacketSnapLen: packets are cut at the snap length, their wire
// length kept.
func TestAFPacketSnapLen(t *testing.T) {
	ns := testNetns(t)
	frames := tcpFrames(t)
	var sock *AFPacket
	var in *injector
	inNetns(t, ns, func() {
		var err error
		sock, err = OpenAFPacket(AFPacketConfig{Iface: "rx0", SnapLen: 60, BlockSize: 1 << 16, NumBlocks: 16, BlockTimeout: 5 * time.Millisecond})
		if err != nil {
			t.Error(err)
			return
		}
		in = newInjector(t)
	})
	if sock == nil {
		t.FailNow()
	}
	defer sock.Close()
	in.send(t, frames[:1])
	var data []byte
	var ci gopacket.CaptureInfo
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		var ok bool
		if data, ci, ok = sock.Next(); ok {
			break
		}
		WaitAFPackets([]*AFPacket{sock}, 20*time.Millisecond)
	}
	if want := min(60, len(frames[0])); len(data) != want || ci.Length != len(frames[0]) || !bytes.Equal(data, frames[0][:want]) {
		t.Errorf("got %d bytes (wire %d), want %d of %d", len(data), ci.Length, want, len(frames[0]))
	}
}

// TestAFPacketFanout: sockets in one fanout group share the packets, each
// connection (both directions) on one socket.
func TestAFPacketFanout(t *testing.T) {
	ns := testNetns(t)
	frames := tcpFrames(t)
	socks := make([]*AFPacket, 3)
	var in *injector
	inNetns(t, ns, func() {
		for i := range socks {
			s, err := OpenAFPacket(AFPacketConfig{Iface: "rx0", Fanout: true, FanoutGroup: uint16(os.Getpid()), BlockSize: 1 << 16, NumBlocks: 64, BlockTimeout: 5 * time.Millisecond})
			if err != nil {
				t.Error(err)
				return
			}
			socks[i] = s
		}
		in = newInjector(t)
	})
	for _, s := range socks {
		if s == nil {
			t.FailNow()
		}
		defer s.Close()
	}
	in.send(t, frames)
	got := collectRing(t, socks, len(frames))
	owner := map[uint64]int{}
	for i, pk := range got {
		for _, f := range pk {
			p := gopacket.NewPacket(f, layers.LinkTypeEthernet, gopacket.Default)
			h := p.NetworkLayer().NetworkFlow().FastHash() ^ p.TransportLayer().TransportFlow().FastHash()
			if o, ok := owner[h]; ok && o != i {
				t.Fatalf("a connection's packets reached sockets %d and %d", o, i)
			}
			owner[h] = i
		}
	}
	if len(owner) < 2 {
		t.Logf("only %d connections in the corpus: spreading not exercised", len(owner))
	}
}

func TestAFPacketErrors(t *testing.T) {
	if _, err := OpenAFPacket(AFPacketConfig{Iface: "tschnosuch0"}); err == nil || !bytes.Contains([]byte(err.Error()), []byte("no such network interface")) {
		t.Errorf("missing interface: %v", err)
	}
	if _, err := OpenAFPacket(AFPacketConfig{Iface: "lo", BlockSize: 1000}); err == nil || !bytes.Contains([]byte(err.Error()), []byte("page size")) {
		t.Errorf("bad block size: %v", err)
	}
	if _, err := OpenAFPacket(AFPacketConfig{Iface: "lo", FrameSize: 100}); err == nil || !bytes.Contains([]byte(err.Error()), []byte("frame size")) {
		t.Errorf("bad frame size: %v", err)
	}
}
