// Package testpcap makes capture files for tests out of the project's own
// captures, and reads captures into packets for tests in any package.
package testpcap

import (
	"bytes"
	"fmt"
	"os"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
)

// Copies writes n copies of the Ethernet/IPv4 capture src into dst. Copy k
// is moved k×gap later and its client port (every TCP port but 445) becomes
// 20000+k, so that each copy is a connection of its own, whose records have
// their own event ids. Checksums are left as they were: the sensor does not
// check them.
func Copies(src, dst string, n int, gap time.Duration) error {
	if n < 1 || n > 40000 {
		return fmt.Errorf("copies: n %d out of 1..40000", n)
	}
	pkts, link, err := Read(src)
	if err != nil {
		return err
	}
	if link != layers.LinkTypeEthernet {
		return fmt.Errorf("%s: link type %v, want Ethernet", src, link)
	}
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	w := pcapgo.NewWriter(out)
	if err := w.WriteFileHeader(65535, layers.LinkTypeEthernet); err != nil {
		out.Close()
		return err
	}
	for k := range n {
		for _, p := range pkts {
			d := bytes.Clone(p.Data)
			// Ethernet, IPv4, TCP: the ports follow the IPv4 header.
			if len(d) >= 34 && d[12] == 0x08 && d[13] == 0x00 && d[23] == 6 {
				tcp := 14 + int(d[14]&0x0f)*4
				if len(d) >= tcp+4 {
					port := uint16(20000 + k)
					for _, off := range []int{tcp, tcp + 2} {
						if d[off] != 0x01 || d[off+1] != 0xbd { // 445 stays
							d[off], d[off+1] = byte(port>>8), byte(port)
						}
					}
				}
			}
			ci := gopacket.CaptureInfo{Timestamp: p.Info.Timestamp.Add(time.Duration(k) * gap), CaptureLength: len(d), Length: len(d)}
			if err := w.WritePacket(ci, d); err != nil {
				out.Close()
				return err
			}
		}
	}
	return out.Close()
}
