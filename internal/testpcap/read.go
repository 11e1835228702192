package testpcap

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
)

// Packet is one record of a capture file: its bytes and capture info.
type Packet struct {
	Data []byte
	Info gopacket.CaptureInfo
}

// maxSnapLen is the longest record Read accepts. Some public captures hold
// frames longer than their header's snap length, and pcapgo would refuse
// them at that length.
const maxSnapLen = 1 << 18

// Read returns every record of the classic pcap file at path, in file
// order (record k is frame k+1 as Wireshark counts), and its link type.
func Read(path string) ([]Packet, layers.LinkType, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	if err != nil {
		return nil, 0, fmt.Errorf("%s: %w", path, err)
	}
	r.SetSnaplen(maxSnapLen)
	var pkts []Packet
	for {
		data, ci, err := r.ReadPacketData()
		if errors.Is(err, io.EOF) {
			return pkts, r.LinkType(), nil
		}
		if err != nil {
			return nil, 0, fmt.Errorf("%s frame %d: %w", path, len(pkts)+1, err)
		}
		pkts = append(pkts, Packet{data, ci})
	}
}
