package main

import (
	"bytes"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
)

// TestWriteDeterministic checks that the same options give the same bytes
// and that every frame carries correct IPv4 and TCP checksums, as gopacket
// recomputes them.
func TestWriteDeterministic(t *testing.T) {
	o := Options{Short: 40, Bulk: 1, BulkBytes: 200000, Seed: 7, Duration: 2}
	var a, b bytes.Buffer
	na, _, err := Write(&a, o)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := Write(&b, o); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Fatal("two runs with the same options differ")
	}
	r, err := pcapgo.NewReader(bytes.NewReader(a.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	n, ports := 0, map[uint16]bool{}
	for {
		data, _, err := r.ReadPacketData()
		if err != nil {
			break
		}
		n++
		p := gopacket.NewPacket(data, layers.LayerTypeEthernet, gopacket.Default)
		ip, _ := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		tcp, _ := p.Layer(layers.LayerTypeTCP).(*layers.TCP)
		if ip == nil || tcp == nil {
			t.Fatalf("packet %d: not IPv4/TCP: %v", n, p)
		}
		ports[uint16(tcp.SrcPort)], ports[uint16(tcp.DstPort)] = true, true
		ipSum, tcpSum := ip.Checksum, tcp.Checksum
		tcp.SetNetworkLayerForChecksum(ip)
		buf := gopacket.NewSerializeBuffer()
		if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{ComputeChecksums: true},
			ip, tcp, gopacket.Payload(tcp.Payload)); err != nil {
			t.Fatal(err)
		}
		if ip.Checksum != ipSum || tcp.Checksum != tcpSum {
			t.Fatalf("packet %d: checksums %#x/%#x, want %#x/%#x", n, ipSum, tcpSum, ip.Checksum, tcp.Checksum)
		}
	}
	if n != na {
		t.Fatalf("read %d packets, wrote %d", n, na)
	}
	for _, p := range []uint16{135, 139, 445} {
		if ports[p] {
			t.Errorf("port %d in the mix: it must hold no SMB or DCE-RPC", p)
		}
	}
}
