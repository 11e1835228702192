package flood

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf16"

	"github.com/tschsensor/tschsensor/internal/csum"
)

// Registration rewrites a capture holding a SchRpcRegisterTask in one SMB2
// WRITE or SMB1 WRITE_ANDX (the project's impacket atexec captures) so that the task XML carries pad more
// characters (an XML comment right after the <Task> start tag, so that
// everything that matters comes after the padding). The stub is cut into
// 4280-byte fragments as Windows and Impacket do; fragsPerWrite of them go in
// each SMB2 WRITE (0: all in one WRITE; -1: all in one FSCTL_PIPE_TRANSCEIVE
// IOCTL instead). Other frames are kept; sequence and
// acknowledgement numbers and timestamps after the change are shifted.
func Registration(pkts []Packet, pad, fragsPerWrite int, sink Sink) error {
	return RegistrationPadded(pkts, Padding{Before: pad}, fragsPerWrite, sink)
}

// Padding says where a registration's task XML is padded: Before characters
// of comment right after the <Task> start tag, After characters of comment
// right before its end tag (so that the elements that matter sit in the
// middle), and Decoy written in the middle of the first comment (markup
// Windows ignores).
type Padding struct {
	Before, After int
	Decoy         string
}

// RegistrationPadded is Registration with padding on both sides.
func RegistrationPadded(pkts []Packet, pad Padding, fragsPerWrite int, sink Sink) error {
	var segs []seg
	var client, rpc stream
	for i, p := range pkts {
		s, ok := parseSeg(p.Data)
		if !ok {
			continue
		}
		s.i = i
		if s.dport == 445 && client.isn == 0 && s.flags&flagSYN != 0 {
			client = stream{src: s.src, sport: s.sport, isn: s.seq + 1}
		}
		if s.dport != 445 && s.dport != 135 && s.flags&(flagSYN|flagACK) == flagSYN {
			// ncacn_ip_tcp: the last connection to a mapped port.
			rpc = stream{src: s.src, sport: s.sport, isn: s.seq + 1}
		}
		segs = append(segs, s)
	}
	if client.isn == 0 {
		client = rpc
	}
	if client.isn == 0 {
		return errors.New("registration: no SYN to port 445 or to a mapped port in the capture")
	}
	for _, s := range segs {
		if s.src == client.src && s.sport == client.sport && len(s.payload) > 0 {
			off := int(s.seq - client.isn)
			if off != len(client.data) {
				return fmt.Errorf("registration: client stream not in order at frame %d", s.i+1)
			}
			client.data = append(client.data, s.payload...)
		}
	}
	start, end, repl, err := rewriteRegister(client.data, pad, fragsPerWrite)
	if err != nil {
		return err
	}
	delta := uint32(len(repl) - (end - start))
	var shift time.Duration
	g := &gen{sink: sink}
	next := 0
	emitted := false
	for _, s := range segs {
		for ; next < s.i; next++ {
			if err := g.pass(pkts[next], shift); err != nil {
				return err
			}
		}
		next = s.i + 1
		p := pkts[s.i]
		fromClient := s.src == client.src && s.sport == client.sport
		if !fromClient {
			ack := s.ack
			if s.flags&flagACK != 0 && int(s.ack-client.isn) > start && int32(s.ack-client.isn) > 0 {
				ack += delta
			}
			if err := g.rebuild(p, s, s.seq, ack, s.payload, shift); err != nil {
				return err
			}
			continue
		}
		a := int(int32(s.seq - client.isn))
		b := a + len(s.payload)
		switch {
		case len(s.payload) == 0 || b <= start:
			if err := g.rebuild(p, s, s.seq+ifAfter(a, end, delta), s.ack, s.payload, shift); err != nil {
				return err
			}
		case a >= end:
			if err := g.rebuild(p, s, s.seq+delta, s.ack, s.payload, shift); err != nil {
				return err
			}
		default:
			// The register message: its new bytes, in wire-size segments.
			if !emitted {
				emitted = true
				data := append(client.data[a:start:start], repl...)
				for off := 0; off < len(data); off += segment {
					chunk := data[off:min(off+segment, len(data))]
					if err := g.rebuild(p, s, client.isn+uint32(a+off), s.ack, chunk, shift); err != nil {
						return err
					}
					shift += time.Microsecond
				}
			}
			if b > end {
				if err := g.rebuild(p, s, client.isn+uint32(end)+delta, s.ack, s.payload[end-a:], shift); err != nil {
					return err
				}
			}
		}
	}
	for ; next < len(pkts); next++ {
		if err := g.pass(pkts[next], shift); err != nil {
			return err
		}
	}
	return nil
}

func ifAfter(a, end int, d uint32) uint32 {
	if a >= end {
		return d
	}
	return 0
}

type stream struct {
	src   [4]byte
	sport uint16
	isn   uint32
	data  []byte
}

// seg is an Ethernet/IPv4/TCP frame's parts.
type seg struct {
	i          int
	src, dst   [4]byte
	sport      uint16
	dport      uint16
	seq, ack   uint32
	flags      byte
	ipOff, hdr int // IP header offset, end of TCP header
	payload    []byte
}

func parseSeg(b []byte) (seg, bool) {
	var s seg
	if len(b) < 14+20 || binary.BigEndian.Uint16(b[12:]) != 0x0800 {
		return s, false
	}
	ip := b[14:]
	ihl := int(ip[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(ip[2:]))
	if ip[9] != 6 || ihl < 20 || total > len(ip) || total < ihl+20 {
		return s, false
	}
	t := ip[ihl:total]
	off := int(t[12]>>4) * 4
	if off < 20 || off > len(t) {
		return s, false
	}
	s.src, s.dst = [4]byte(ip[12:16]), [4]byte(ip[16:20])
	s.sport, s.dport = binary.BigEndian.Uint16(t[0:]), binary.BigEndian.Uint16(t[2:])
	s.seq, s.ack = binary.BigEndian.Uint32(t[4:]), binary.BigEndian.Uint32(t[8:])
	s.flags = t[13]
	s.ipOff, s.hdr = 14, 14+ihl+off
	s.payload = t[off:]
	return s, true
}

func (g *gen) pass(p Packet, shift time.Duration) error {
	ci := p.CI
	ci.Timestamp = ci.Timestamp.Add(shift)
	return g.sink(ci, p.Data)
}

// rebuild emits frame p with a new sequence, acknowledgement and payload,
// its headers (options included) kept and checksums recomputed.
func (g *gen) rebuild(p Packet, s seg, seq, ack uint32, payload []byte, shift time.Duration) error {
	b := append(append(g.buf[:0], p.Data[:s.hdr]...), payload...)
	g.buf = b
	ip := b[s.ipOff:]
	ihl := int(ip[0]&0x0f) * 4
	binary.BigEndian.PutUint16(ip[2:], uint16(len(ip)))
	binary.BigEndian.PutUint16(ip[10:], 0)
	binary.BigEndian.PutUint16(ip[10:], ^csum.Fold(csum.Add(0, ip[:ihl])))
	t := ip[ihl:]
	binary.BigEndian.PutUint32(t[4:], seq)
	binary.BigEndian.PutUint32(t[8:], ack)
	binary.BigEndian.PutUint16(t[16:], 0)
	cs := csum.Add(0, ip[12:20]) + 6 + uint32(len(t))
	binary.BigEndian.PutUint16(t[16:], ^csum.Fold(csum.Add(cs, t)))
	ci := p.CI
	ci.Timestamp = ci.Timestamp.Add(shift)
	ci.CaptureLength, ci.Length = len(b), len(b)
	return g.sink(ci, b)
}

// rewriteRegister finds the SMB2 WRITE, SMB1 WRITE_ANDX or DCE-RPC request
// (ncacn_ip_tcp) carrying SchRpcRegisterTask in a client stream and returns its extent and the messages replacing it.
func rewriteRegister(c []byte, pad Padding, fragsPerWrite int) (start, end int, repl []byte, err error) {
	le := binary.LittleEndian
	for off := 0; len(c) > 0 && c[0] == 5 && off+24 <= len(c); {
		// A DCE-RPC stream over TCP: the request in one fragment without
		// a verifier (no or connect-level authentication).
		pdu := c[off:min(off+int(le.Uint16(c[off+8:])), len(c))]
		if len(pdu) < 24 {
			break
		}
		if pdu[2] == 0 && le.Uint16(pdu[22:]) == 1 && le.Uint16(pdu[10:]) == 0 && pdu[3]&3 == 3 {
			stub, err := padXML(pdu[24:], pad)
			if err != nil {
				return 0, 0, nil, err
			}
			var repl []byte
			for _, f := range fragments(le.Uint32(pdu[12:]), pdu[20:24], stub) {
				repl = append(repl, f...)
			}
			return off, off + len(pdu), repl, nil
		}
		off += len(pdu)
	}
	for off := 0; off+4+64+48 <= len(c); {
		n := int(c[off+1])<<16 | int(binary.BigEndian.Uint16(c[off+2:]))
		msg := c[off+4 : min(off+4+n, len(c))]
		next := off + 4 + n
		if c[off] == 0 && len(msg) >= 64+48 && string(msg[:4]) == "\xfeSMB" && le.Uint16(msg[12:]) == 9 && le.Uint32(msg[16:])&1 == 0 {
			doff, dlen := int(le.Uint16(msg[64+2:])), int(le.Uint32(msg[64+4:]))
			if doff+dlen <= len(msg) && dlen >= 24 {
				pdu := msg[doff : doff+dlen]
				if pdu[0] == 5 && pdu[2] == 0 && le.Uint16(pdu[22:]) == 1 && le.Uint16(pdu[10:]) == 0 && pdu[3]&3 == 3 {
					stub, err := padXML(pdu[24:le.Uint16(pdu[8:])], pad)
					if err != nil {
						return 0, 0, nil, err
					}
					return off, next, writes(msg[:64+48], le.Uint32(pdu[12:]), pdu[20:24], stub, fragsPerWrite), nil
				}
			}
		}
		if c[off] == 0 && len(msg) >= 33 && string(msg[:4]) == "\xffSMB" && msg[4] == 0x2f && msg[9]&0x80 == 0 && int(msg[32]) >= 12 && len(msg) >= 33+2*int(msg[32]) {
			// SMB1 WRITE_ANDX (MS-CIFS 2.2.4.43.1): words from byte 33.
			w := msg[33:]
			doff, dlen := int(le.Uint16(w[22:])), int(le.Uint16(w[18:]))<<16|int(le.Uint16(w[20:]))
			if doff >= 35+2*int(msg[32]) && doff+dlen <= len(msg) && dlen >= 24 {
				pdu := msg[doff : doff+dlen]
				if pdu[0] == 5 && pdu[2] == 0 && le.Uint16(pdu[22:]) == 1 && le.Uint16(pdu[10:]) == 0 && pdu[3]&3 == 3 {
					stub, err := padXML(pdu[24:le.Uint16(pdu[8:])], pad)
					if err != nil {
						return 0, 0, nil, err
					}
					return off, next, writes1(msg[:doff], le.Uint32(pdu[12:]), pdu[20:24], stub, fragsPerWrite), nil
				}
			}
		}
		off = next
	}
	return 0, 0, nil, errors.New("registration: no SchRpcRegisterTask request in one SMB2 WRITE or SMB1 WRITE_ANDX")
}

// padXML inserts comments into the task XML of a SchRpcRegisterTask
// request stub (NDR, little-endian).
func padXML(stub []byte, pad Padding) ([]byte, error) {
	le := binary.LittleEndian
	// path: unique pointer, then a conformant varying string.
	if len(stub) < 16 {
		return nil, errors.New("registration: stub too short")
	}
	p := 4
	if le.Uint32(stub) != 0 {
		cnt := int(le.Uint32(stub[p+8:]))
		p += 12 + 2*cnt
		p = (p + 3) &^ 3
	}
	if p+12 > len(stub) {
		return nil, errors.New("registration: stub too short for the XML")
	}
	cnt := int(le.Uint32(stub[p+8:]))
	xmlEnd := p + 12 + 2*cnt
	if xmlEnd > len(stub) {
		return nil, errors.New("registration: XML beyond the stub")
	}
	units := make([]uint16, cnt)
	for i := range units {
		units[i] = le.Uint16(stub[p+12+2*i:])
	}
	xml := string(utf16.Decode(units))
	at := indexAfter(xml, "<Task")
	if at < 0 {
		return nil, errors.New("registration: no <Task> element in the XML")
	}
	filler := make([]byte, pad.Before)
	for i := range filler {
		filler[i] = 'A' + byte(i%26)
	}
	before := string(filler[:pad.Before/2]) + pad.Decoy + string(filler[pad.Before/2:])
	if pad.After > 0 {
		end := strings.LastIndex(xml, "</Task>")
		if end < at {
			return nil, errors.New("registration: no </Task> after <Task>")
		}
		xml = xml[:end] + "<!--" + strings.Repeat(" ", pad.After) + "-->" + xml[end:]
	}
	xml = xml[:at] + "<!--" + before + "-->" + xml[at:]
	enc := utf16.Encode([]rune(xml))
	out := append([]byte(nil), stub[:p]...)
	out = le.AppendUint32(out, uint32(len(enc)))
	out = le.AppendUint32(out, 0)
	out = le.AppendUint32(out, uint32(len(enc)))
	for _, u := range enc {
		out = le.AppendUint16(out, u)
	}
	for len(out)%4 != 0 {
		out = append(out, 0)
	}
	rest := (xmlEnd + 3) &^ 3
	return append(out, stub[min(rest, len(stub)):]...), nil
}

// indexAfter returns the index just past the end of the first start tag
// beginning with prefix.
func indexAfter(s, prefix string) int {
	for i := 0; i+len(prefix) <= len(s); i++ {
		if s[i:i+len(prefix)] == prefix {
			for j := i; j < len(s); j++ {
				if s[j] == '>' {
					return j + 1
				}
			}
		}
	}
	return -1
}

// writes1 packs the request fragments into SMB1 WRITE_ANDX requests built
// from the original one up to its data (prefix): the data length's high
// word carries sizes past 64 KiB (CAP_LARGE_WRITEX); ByteCount, 16 bits,
// is left at its low bits. fragsPerWrite as for SMB2 (no IOCTL in SMB1).
func writes1(prefix []byte, callID uint32, ctxOpnum []byte, stub []byte, perWrite int) []byte {
	le := binary.LittleEndian
	pdus := fragments(callID, ctxOpnum, stub)
	if perWrite <= 0 {
		perWrite = len(pdus)
	}
	wc := int(prefix[32])
	var out []byte
	for i := 0; i < len(pdus); i += perWrite {
		var data []byte
		for _, p := range pdus[i:min(i+perWrite, len(pdus))] {
			data = append(data, p...)
		}
		m := append([]byte(nil), prefix...)
		if i > 0 {
			// Extra WRITEs take multiplex ids no request of the capture uses.
			le.PutUint16(m[30:], uint16(0x7000+i))
		}
		w := m[33:]
		le.PutUint16(w[18:], uint16(len(data)>>16))
		le.PutUint16(w[20:], uint16(len(data)))
		le.PutUint16(m[33+2*wc:], uint16(len(m)-(35+2*wc)+len(data)))
		m = append(m, data...)
		out = append(out, 0, byte(len(m)>>16), byte(len(m)>>8), byte(len(m)))
		out = append(out, m...)
	}
	return out
}

// fragments cuts stub into request PDUs of at most 4280 bytes, as Windows
// and Impacket do.
func fragments(callID uint32, ctxOpnum []byte, stub []byte) [][]byte {
	le := binary.LittleEndian
	const fragMax = 4280
	var pdus [][]byte
	for off := 0; off < len(stub) || off == 0; {
		n := min(fragMax-24, len(stub)-off)
		pdu := rpcHeader(nil, 0, callID)
		pdu[3] = 0
		if off == 0 {
			pdu[3] |= 1
		}
		if off+n == len(stub) {
			pdu[3] |= 2
		}
		pdu = le.AppendUint32(pdu, uint32(len(stub)-off))
		pdu = append(pdu, ctxOpnum...)
		pdu = append(pdu, stub[off:off+n]...)
		pdus = append(pdus, setFragLen(pdu))
		off += n
		if n == 0 {
			break
		}
	}
	return pdus
}

// writes cuts stub into request fragments and packs them into SMB2 WRITEs
// built from the original WRITE's header and fixed body.
func writes(hdr []byte, callID uint32, ctxOpnum []byte, stub []byte, perWrite int) []byte {
	le := binary.LittleEndian
	pdus := fragments(callID, ctxOpnum, stub)
	if perWrite < 0 {
		var data []byte
		for _, p := range pdus {
			data = append(data, p...)
		}
		m := append([]byte(nil), hdr[:64]...)
		le.PutUint16(m[12:], 0x0b) // IOCTL
		body := make([]byte, 56)
		le.PutUint16(body[0:], 57)
		le.PutUint32(body[4:], 0x0011c017) // FSCTL_PIPE_TRANSCEIVE
		copy(body[8:24], hdr[64+16:64+32])
		le.PutUint32(body[24:], 64+56)
		le.PutUint32(body[28:], uint32(len(data)))
		le.PutUint32(body[36:], 64+56)
		le.PutUint32(body[44:], 4280)
		le.PutUint32(body[48:], 1) // SMB2_0_IOCTL_IS_FSCTL
		m = append(append(m, body...), data...)
		return append([]byte{0, byte(len(m) >> 16), byte(len(m) >> 8), byte(len(m))}, m...)
	}
	if perWrite == 0 {
		perWrite = len(pdus)
	}
	var out []byte
	for i := 0; i < len(pdus); i += perWrite {
		var data []byte
		for _, p := range pdus[i:min(i+perWrite, len(pdus))] {
			data = append(data, p...)
		}
		m := append([]byte(nil), hdr...)
		if i > 0 {
			// Extra WRITEs take message ids no request of the capture uses.
			le.PutUint64(m[24:], 1<<40+uint64(i))
		}
		le.PutUint16(m[64+2:], 64+48)
		le.PutUint32(m[64+4:], uint32(len(data)))
		m = append(m, data...)
		out = append(out, 0, byte(len(m)>>16), byte(len(m)>>8), byte(len(m)))
		out = append(out, m...)
	}
	return out
}
