package dissect

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf16"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/tschsensor/tschsensor/internal/testpcap"
)

// TestKerberosLabCaptures opens the Kerberos lab's DCE-RPC-over-TCP
// captures (pcaps/krb-*-tcp-*.pcap, made with Samba's KDC and real
// Impacket and go-msrpc clients, keys in pcaps/keys/lab.keytab) with this
// package alone: the AP-REQ of each bind, the AP-REP of the bind_ack (and
// the third leg), then every sealed request and response, in wire order.
// Every sealed PDU must open and the task's command must appear.
func TestKerberosLabCaptures(t *testing.T) {
	ktFile, err := os.ReadFile("../pcaps/keys/lab.keytab")
	if err != nil {
		t.Skipf("no Kerberos lab keytab (pcaps/keys/lab.keytab, from the krblab captures): %v", err)
	}
	keys, _, err := ParseKeytab(ktFile)
	if err != nil {
		t.Fatal(err)
	}
	var ks KerberosKeys
	ks.Add(keys...)
	files, _ := filepath.Glob("../pcaps/krb-*-tcp-*.pcap")
	if len(files) == 0 {
		t.Skip("no pcaps/krb-*-tcp-*.pcap")
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			streams := tcpStreams(t, file)
			var sealed, opened, contexts int
			var plain [][]byte
			for _, s := range streams {
				var c *KerberosContext
				for _, p := range s.pdus {
					var h DCERPCHeader
					if ok, _ := PeekDCERPC(p.b, &h); !ok {
						t.Fatalf("frame %d: not DCE-RPC", p.frame)
					}
					var tr AuthTrailer
					if ok, err := ParseAuthTrailer(p.b, &h, &tr); err != nil || !ok {
						continue
					}
					if tr.Type != AuthTypeKerberos && tr.Type != AuthTypeSPNEGO {
						continue
					}
					switch h.PType {
					case PTypeBind, PTypeAlterContext, 16: // 16: auth3
						typ, _ := FindKerberosMessage(tr.Value)
						switch {
						case typ == KerberosAPReq:
							if _, err := OpenAPReq(tr.Value, nil); !errors.Is(err, ErrKerberosNoKey) {
								t.Errorf("frame %d: without keys: %v", p.frame, err)
							}
							c, err = OpenAPReq(tr.Value, &ks)
							if err != nil {
								t.Fatalf("frame %d: %v", p.frame, err)
							}
							contexts++
						case typ == KerberosAPRep && c != nil:
							if err := c.OpenAPRep(tr.Value, false); err != nil {
								t.Fatalf("frame %d: third leg: %v", p.frame, err)
							}
						}
					case PTypeBindAck, PTypeAlterCtxResp:
						if typ, _ := FindKerberosMessage(tr.Value); typ == KerberosAPRep && c != nil {
							if err := c.OpenAPRep(tr.Value, true); err != nil {
								t.Fatalf("frame %d: %v", p.frame, err)
							}
						}
					case PTypeRequest, PTypeResponse:
						if c == nil || tr.Level != AuthLevelPrivacy {
							continue
						}
						sealed++
						start := 24
						if h.PType == PTypeRequest && h.Flags&PFCObjectUUID != 0 {
							start += 16
						}
						pdu := append([]byte(nil), p.b...)
						if err := c.Unseal(p.fromClient, pdu, pdu[start:tr.Offset], pdu[tr.Offset+8:]); err != nil {
							t.Errorf("frame %d: %v", p.frame, err)
							continue
						}
						opened++
						plain = append(plain, pdu[start:tr.Offset])
					}
				}
				if c != nil {
					t.Logf("%s -> %s, %s, acceptor subkey %v, header signing %d, %d sealed PDUs",
						c.Client(), c.ServiceName, KerberosETypeName(c.MessageKeyEType()), c.HasAcceptorSubkey(), c.headerSign, sealed)
				}
			}
			if contexts == 0 || sealed == 0 || opened != sealed {
				t.Errorf("%d contexts, %d sealed PDUs, %d opened", contexts, sealed, opened)
			}
			// The facts file the generator wrote names the command of each
			// SchRpcRegisterTask; it must be in the unsealed stubs.
			var facts struct {
				Calls []struct{ Op, Command string }
			}
			fb, err := os.ReadFile(strings.TrimSuffix(file, ".pcap") + ".json")
			if err != nil || json.Unmarshal(fb, &facts) != nil {
				t.Fatalf("facts of %s: %v", file, err)
			}
			all, n := bytes.Join(plain, nil), 0
			for _, call := range facts.Calls {
				if call.Op == "SchRpcRegisterTask" && call.Command != "" {
					n++
					if !bytes.Contains(all, utf16le(call.Command)) {
						t.Errorf("command %q not in the unsealed stubs", call.Command)
					}
				}
			}
			if n == 0 {
				t.Error("facts name no SchRpcRegisterTask command")
			}
		})
	}
}

func utf16le(s string) []byte {
	var b []byte
	for _, u := range utf16.Encode([]rune(s)) {
		b = append(b, byte(u), byte(u>>8))
	}
	return b
}

type labPDU struct {
	b          []byte
	frame      int
	fromClient bool
}

type labStream struct {
	pdus []labPDU
	raw  [2][]byte // all payload: [0] from the client, [1] from the server
}

// tcpStreams cuts each TCP connection of a lab capture (in order, no loss:
// the lab captures on a veth) into DCE-RPC PDUs by frag_length. The client
// is the side that sent the first SYN.
func tcpStreams(t *testing.T, file string) []*labStream {
	t.Helper()
	pkts, link, err := testpcap.Read(file)
	if err != nil {
		t.Fatal(err)
	}
	type dir struct {
		buf  []byte
		next uint32
		init bool
	}
	type conn struct {
		s          *labStream
		client     string
		dirs       map[bool]*dir
		firstFrame int
	}
	conns := map[string]*conn{}
	var order []*conn
	for i, rec := range pkts {
		frame := i + 1
		pkt := gopacket.NewPacket(rec.Data, link, gopacket.NoCopy)
		nl, tl := pkt.NetworkLayer(), pkt.Layer(layers.LayerTypeTCP)
		if nl == nil || tl == nil {
			continue
		}
		tcp := tl.(*layers.TCP)
		src := fmt.Sprintf("%v:%d", nl.NetworkFlow().Src(), tcp.SrcPort)
		dst := fmt.Sprintf("%v:%d", nl.NetworkFlow().Dst(), tcp.DstPort)
		key := src + "|" + dst
		if src > dst {
			key = dst + "|" + src
		}
		c := conns[key]
		if c == nil {
			if !tcp.SYN || tcp.ACK {
				continue
			}
			c = &conn{s: &labStream{}, client: src, dirs: map[bool]*dir{true: {}, false: {}}, firstFrame: frame}
			conns[key] = c
			order = append(order, c)
		}
		fromClient := src == c.client
		d := c.dirs[fromClient]
		if tcp.SYN {
			d.next, d.init = tcp.Seq+1, true
			continue
		}
		if len(tcp.Payload) == 0 || tcp.Seq != d.next {
			continue // retransmission or keep-alive
		}
		d.next += uint32(len(tcp.Payload))
		if fromClient {
			c.s.raw[0] = append(c.s.raw[0], tcp.Payload...)
		} else {
			c.s.raw[1] = append(c.s.raw[1], tcp.Payload...)
		}
		d.buf = append(d.buf, tcp.Payload...)
		for {
			var h DCERPCHeader
			ok, _ := PeekDCERPC(d.buf, &h)
			if !ok || len(d.buf) < int(h.FragLen) {
				break
			}
			c.s.pdus = append(c.s.pdus, labPDU{b: append([]byte(nil), d.buf[:h.FragLen]...), frame: frame, fromClient: fromClient})
			d.buf = d.buf[h.FragLen:]
		}
	}
	var out []*labStream
	for _, c := range order {
		out = append(out, c.s)
	}
	return out
}

// TestKerberosZeekSMB2Capture opens a ticket a Windows KDC issued: Zeek's
// smb2_krb.pcap (in ../shared as C_zeek__smb2_krb.pcap), an SMB2 session
// setup to host/phxlabbal821.ds.susq.com. Zeek publishes that service's key
// beside the capture (zeek/zeek testing/btest/Traces/krb/smb2_krb.keytab,
// BSD-3-Clause; only the key is reproduced here, as a credentials line),
// and its baseline names the client: wallior@DS.SUSQ.COM. A Windows ticket
// with a PAC, a Windows AP-REP with an acceptor subkey.
func TestKerberosZeekSMB2Capture(t *testing.T) {
	const file = "../../shared/pcaps/C_zeek__smb2_krb.pcap"
	if _, err := os.Stat(file); err != nil {
		t.Skipf("shared corpus absent: %v", err)
	}
	creds, err := ParseCredentials([]byte("host/phxlabbal821.ds.susq.com@DS.SUSQ.COM:aes256:" +
		"e8746b39615e6b6c3b42c78ac585ddd9874a87088e5be713634da5c85014d31f\n"))
	if err != nil {
		t.Fatal(err)
	}
	var ks KerberosKeys
	ks.Add(creds.KerberosKeys()...)
	var opened, apreps int
	for _, s := range tcpStreams(t, file) {
		// The SPNEGO blobs sit inside SMB2 SESSION_SETUP; the OID search of
		// FindKerberosMessage finds them in the raw stream.
		if typ, _ := FindKerberosMessage(s.raw[0]); typ != KerberosAPReq {
			continue
		}
		c, err := OpenAPReq(s.raw[0], &ks)
		if err != nil {
			t.Fatal(err)
		}
		opened++
		// The ticket is for cifs/ under another DNS name: only the "every key
		// of the etype" step of Candidates finds the host/ key.
		if c.Client() != "wallior@DS.SUSQ.COM" || c.ServiceName != "cifs/phxlabbal821.techlab.susq.com" || c.TicketEType != KerberosETypeAES256 {
			t.Errorf("ticket: %s -> %s (%s)", c.Client(), c.ServiceName, KerberosETypeName(c.TicketEType))
		}
		if typ, _ := FindKerberosMessage(s.raw[1]); typ == KerberosAPRep {
			if err := c.OpenAPRep(s.raw[1], true); err != nil {
				t.Errorf("AP-REP: %v", err)
			} else {
				apreps++
			}
		}
		t.Logf("%s -> %s, authenticator subkey %s, acceptor subkey %v, GSS flags %#x, SMB session key %d bytes",
			c.Client(), c.ServiceName, KerberosETypeName(c.MessageKeyEType()), c.HasAcceptorSubkey(), c.GSSFlags,
			len(c.SMBSessionKey(SMB2Dialect311, SMB3CipherAES256GCM)))
	}
	if opened == 0 || apreps != opened {
		t.Errorf("%d AP-REQs opened, %d AP-REPs", opened, apreps)
	}
}
