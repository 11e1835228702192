package source

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"golang.org/x/net/bpf"
)

// capturedFrames reads every frame of the project's captures plus a few
// built here that the filter must reject or keep.
func capturedFrames(t *testing.T) [][]byte {
	t.Helper()
	files, _ := filepath.Glob("../../pcaps/*.pcap")
	if len(files) == 0 {
		t.Fatal("no captures in ../../pcaps")
	}
	var out [][]byte
	for _, name := range files {
		src, err := OpenFile(name)
		if err != nil {
			t.Fatal(err)
		}
		for {
			data, _, link, err := src.ReadPacket()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if link == layers.LinkTypeEthernet {
				out = append(out, append([]byte(nil), data...))
			}
		}
		src.Close()
	}
	return append(out, synthFrames(t)...)
}

// synthFrames builds UDP, ARP, VLAN-tagged TCP and IPv6 TCP frames.
func synthFrames(t *testing.T) [][]byte {
	t.Helper()
	eth := func(typ layers.EthernetType) *layers.Ethernet {
		return &layers.Ethernet{SrcMAC: []byte{2, 0, 0, 0, 0, 1}, DstMAC: []byte{2, 0, 0, 0, 0, 2}, EthernetType: typ}
	}
	ip4 := func(p layers.IPProtocol) *layers.IPv4 {
		return &layers.IPv4{Version: 4, TTL: 64, Protocol: p, SrcIP: []byte{10, 0, 0, 1}, DstIP: []byte{10, 0, 0, 2}}
	}
	ip6 := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolTCP,
		SrcIP: []byte{0xfd, 0, 15: 1}, DstIP: []byte{0xfd, 0, 15: 2}}
	tcp := func() *layers.TCP { return &layers.TCP{SrcPort: 49152, DstPort: 445, Seq: 1, SYN: true, Window: 1024} }
	udp := &layers.UDP{SrcPort: 137, DstPort: 137}
	arp := &layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4,
		Operation: 1, SourceHwAddress: []byte{2, 0, 0, 0, 0, 1}, SourceProtAddress: []byte{10, 0, 0, 1},
		DstHwAddress: make([]byte, 6), DstProtAddress: []byte{10, 0, 0, 2}}
	ser := func(ls ...gopacket.SerializableLayer) []byte {
		buf := gopacket.NewSerializeBuffer()
		for _, l := range ls {
			if n, ok := l.(interface {
				SetNetworkLayerForChecksum(gopacket.NetworkLayer) error
			}); ok {
				for _, x := range ls {
					if nl, ok := x.(gopacket.NetworkLayer); ok {
						n.SetNetworkLayerForChecksum(nl)
					}
				}
			}
		}
		if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
			t.Fatal(err)
		}
		return append([]byte(nil), buf.Bytes()...)
	}
	return [][]byte{
		ser(eth(layers.EthernetTypeIPv4), ip4(layers.IPProtocolUDP), udp, gopacket.Payload("x")),
		ser(eth(layers.EthernetTypeARP), arp),
		ser(eth(layers.EthernetTypeDot1Q), &layers.Dot1Q{VLANIdentifier: 42, Type: layers.EthernetTypeIPv4}, ip4(layers.IPProtocolTCP), tcp()),
		ser(eth(layers.EthernetTypeIPv6), ip6, tcp()),
	}
}

// isTCP is the reference the filter is checked against, by gopacket.
func isTCP(data []byte) (tcp, vlan bool) {
	p := gopacket.NewPacket(data, layers.LinkTypeEthernet, gopacket.Default)
	return p.Layer(layers.LayerTypeTCP) != nil, p.Layer(layers.LayerTypeDot1Q) != nil
}

func TestDefaultFilter(t *testing.T) {
	prog, err := DefaultFilter(layers.LinkTypeEthernet, 1000)
	if err != nil {
		t.Fatal(err)
	}
	vm := newVM(t, prog)
	frames := capturedFrames(t)
	var kept, dropped int
	for i, f := range frames {
		n, err := vm.Run(f)
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		tcp, vlan := isTCP(f)
		switch {
		case (tcp || vlan) && n != 1000:
			t.Errorf("frame %d (tcp %v, vlan %v): filter returned %d, want the snap length", i, tcp, vlan, n)
		case !tcp && !vlan && n != 0:
			t.Errorf("frame %d (not TCP): filter returned %d, want 0", i, n)
		}
		if n > 0 {
			kept++
		} else {
			dropped++
		}
	}
	if kept == 0 || dropped == 0 {
		t.Errorf("kept %d, dropped %d: the corpus should exercise both", kept, dropped)
	}
}

func TestDefaultFilterRaw(t *testing.T) {
	prog, err := DefaultFilter(layers.LinkTypeRaw, 64)
	if err != nil {
		t.Fatal(err)
	}
	vm := newVM(t, prog)
	for i, f := range synthFrames(t) {
		tcp, vlan := isTCP(f)
		if vlan {
			continue
		}
		n, err := vm.Run(f[14:])
		if err != nil {
			t.Fatal(err)
		}
		if (n == 64) != tcp || (n != 0 && n != 64) {
			t.Errorf("frame %d (tcp %v): raw filter returned %d", i, tcp, n)
		}
	}
	if _, err := DefaultFilter(layers.LinkTypeLinuxSLL, 64); err == nil {
		t.Error("DefaultFilter accepted an unsupported link type")
	}
}

func newVM(t *testing.T, raw []bpf.RawInstruction) *bpf.VM {
	t.Helper()
	ins, ok := bpf.Disassemble(raw)
	if !ok {
		t.Fatalf("filter does not disassemble: %v", raw)
	}
	vm, err := bpf.NewVM(ins)
	if err != nil {
		t.Fatal(err)
	}
	return vm
}

func TestParseDDD(t *testing.T) {
	// `tcpdump -ddd -y EN10MB -s 65535 tcp port 445` (tcpdump 4.99).
	good := "4\n40 0 0 12\n21 0 1 2048\n6 0 0 65535\n6 0 0 0\n"
	prog, err := ParseDDD([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	want := []bpf.RawInstruction{{Op: 40, K: 12}, {Op: 21, Jf: 1, K: 2048}, {Op: 6, K: 65535}, {Op: 6}}
	if len(prog) != len(want) {
		t.Fatalf("got %v", prog)
	}
	for i := range want {
		if prog[i] != want[i] {
			t.Errorf("instruction %d = %+v, want %+v", i, prog[i], want[i])
		}
	}
	for _, bad := range []string{
		"", "x\n", "0\n", "5000\n", "2\n6 0 0 1\n", "1\n6 0 0\n", "1\n6 0 0 1\n6 0 0 1\n",
		"1\n70000 0 0 1\n", "1\n6 300 0 1\n", "1\n6 0 0 4294967296\n", "1 2\n6 0 0 1\n",
	} {
		if _, err := ParseDDD([]byte(bad)); err == nil {
			t.Errorf("ParseDDD(%q) accepted", bad)
		}
	}
}

// TestCompileFilter runs the real tcpdump: its "tcp" must agree with the
// built-in filter on every frame of the corpus.
func TestCompileFilter(t *testing.T) {
	if _, err := exec.LookPath("tcpdump"); err != nil {
		_, err := CompileFilter(context.Background(), "tcp", layers.LinkTypeEthernet, 1000)
		if !errors.Is(err, ErrNoTcpdump) {
			t.Fatalf("without tcpdump: %v, want ErrNoTcpdump", err)
		}
		t.Skip("tcpdump not installed")
	}
	prog, err := CompileFilter(context.Background(), "tcp", layers.LinkTypeEthernet, 1000)
	if err != nil {
		t.Fatal(err)
	}
	vm := newVM(t, prog)
	for i, f := range capturedFrames(t) {
		n, err := vm.Run(f)
		if err != nil {
			t.Fatal(err)
		}
		if tcp, vlan := isTCP(f); !vlan && (n == 1000) != tcp {
			t.Errorf("frame %d (tcp %v): tcpdump's filter returned %d", i, tcp, n)
		}
	}
	if _, err := CompileFilter(context.Background(), "tcp and and", layers.LinkTypeEthernet, 0); err == nil || !strings.Contains(err.Error(), "tcpdump") {
		t.Errorf("bad expression: %v", err)
	}
}

// TestReadFilterFile loads what `tcpdump -ddd` printed into a file: the
// same program CompileFilter gets by running tcpdump itself.
func TestReadFilterFile(t *testing.T) {
	if _, err := exec.LookPath("tcpdump"); err != nil {
		t.Skip("tcpdump not installed")
	}
	const expr = "tcp port 445 or tcp port 135"
	out, err := exec.Command("tcpdump", "-ddd", "-y", "EN10MB", "-s", "262144", "--", expr).Output()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "smb.bpf")
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := ReadFilterFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want, err := CompileFilter(context.Background(), expr, 1, 262144)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) < 4 || !reflect.DeepEqual(got, want) {
		t.Errorf("file gave %d instructions, tcpdump %d", len(got), len(want))
	}
	// The program keeps the untagged SYNs to port 445 and drops the rest.
	vm := newVM(t, got)
	for _, f := range synthFrames(t) {
		if tcp, vlan := isTCP(f); !tcp || vlan {
			if n, _ := vm.Run(f); n != 0 {
				t.Errorf("frame %x kept by the filter", f)
			}
			continue
		}
		if n, err := vm.Run(f); err != nil || n == 0 {
			t.Errorf("port 445 SYN dropped by the filter (%d, %v)", n, err)
		}
	}

	for name, data := range map[string][]byte{
		"garbage":   []byte("tcp port 445\n"),
		"too large": bytes.Repeat([]byte("40 0 0 12\n"), maxFilterFile/10+1),
		"short":     []byte("3\n40 0 0 12\n"),
	} {
		p := filepath.Join(t.TempDir(), "bad.bpf")
		os.WriteFile(p, data, 0o644)
		if _, err := ReadFilterFile(p); err == nil || !strings.Contains(err.Error(), p) {
			t.Errorf("%s: %v, want an error naming the file", name, err)
		}
	}
	if _, err := ReadFilterFile(filepath.Join(t.TempDir(), "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}
