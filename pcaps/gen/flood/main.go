// Command flood writes a hostile capture (see package internal/flood): a
// connection flood, unfinished large messages or unanswered requests, with a
// real capture spliced into its middle. Output is a classic pcap, the same
// bytes for the same flags.
//
//	go run ./pcaps/gen/flood -kind syn -n 1000000 -splice pcaps/impacket-atexec-smb2-clear.pcap /tmp/syn.pcap
//	go run ./pcaps/gen/flood -kind register -n 600000 -splice pcaps/impacket-atexec-smb2-clear.pcap /tmp/bigwrite.pcap
//
// Kind register rewrites the splice capture instead: its SchRpcRegisterTask
// gets n characters of XML padding, its fragments packed -frags-per-write to
// an SMB2 WRITE (0: all in one).
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"

	"github.com/tschsensor/tschsensor/internal/flood"
)

func main() {
	kind := flag.String("kind", flood.SYN, "flood shape: "+strings.Join(flood.Kinds(), ", ")+", or register")
	n := flag.Int("n", 1000, "size: connections, requests or SYNs")
	splice := flag.String("splice", "", "Ethernet pcap to merge into the flood's middle (kind register: to rewrite)")
	perWrite := flag.Int("frags-per-write", 0, "kind register: DCE-RPC fragments per SMB2 WRITE (0: all in one)")
	after := flag.Int("after", 0, "kind register: characters of comment before </Task> too (the elements that matter in the middle)")
	decoy := flag.String("decoy", "", "kind register: markup written in the middle of the first comment")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: flood [-kind K] [-n N] [-splice FILE] OUT.pcap")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 1 || *n <= 0 {
		flag.Usage()
		os.Exit(2)
	}
	if err := run(*kind, flood.Padding{Before: *n, After: *after, Decoy: *decoy}, *perWrite, *splice, flag.Arg(0)); err != nil {
		fmt.Fprintln(os.Stderr, "flood:", err)
		os.Exit(1)
	}
}

func run(kind string, pad flood.Padding, perWrite int, splice, out string) error {
	n := pad.Before
	var pkts []flood.Packet
	if splice != "" {
		var err error
		if pkts, err = readPcap(splice); err != nil {
			return err
		}
	}
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	w := pcapgo.NewWriter(bw)
	if err := w.WriteFileHeader(65535, layers.LinkTypeEthernet); err != nil {
		f.Close()
		return err
	}
	write := func(ci gopacket.CaptureInfo, data []byte) error { return w.WritePacket(ci, data) }
	if kind == "register" {
		err = flood.RegistrationPadded(pkts, pad, perWrite, write)
	} else {
		err = flood.Generate(kind, n, pkts, write)
	}
	if err == nil {
		err = bw.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("writing %s: %w", out, err)
	}
	return nil
}

func readPcap(name string) ([]flood.Packet, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r, err := pcapgo.NewReader(bufio.NewReader(f))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if r.LinkType() != layers.LinkTypeEthernet {
		return nil, fmt.Errorf("%s: link type %v, want Ethernet", name, r.LinkType())
	}
	var pkts []flood.Packet
	for {
		data, ci, err := r.ReadPacketData()
		if errors.Is(err, io.EOF) {
			return pkts, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		pkts = append(pkts, flood.Packet{CI: ci, Data: data})
	}
}
