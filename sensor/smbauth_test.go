package sensor

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/tschsensor/tschsensor/detect"
	"github.com/tschsensor/tschsensor/dissect"
	"github.com/tschsensor/tschsensor/sensor/output"
)

// wireMsg is one NBSS message of a capture and its direction.
type wireMsg struct {
	fromClient bool
	b          []byte
}

// smbWireMessages reads the SMB connection (tcp/445) of a capture and
// returns its NBSS messages in the order they completed on the wire. The
// lab captures have no loss; retransmitted bytes are dropped by sequence.
func smbWireMessages(t *testing.T, path string) []wireMsg {
	t.Helper()
	return wireMessages(t, path, 445, func(b []byte) int {
		if len(b) < 4 {
			return 0
		}
		return 4 + int(binary.BigEndian.Uint32(b)&0xffffff)
	})
}

// wireMessages reads the TCP connection to port of a capture and returns
// its messages, framed by msgLen (0: need more bytes), in the order they
// completed on the wire.
func wireMessages(t *testing.T, path string, port layers.TCPPort, msgLen func([]byte) int) []wireMsg {
	t.Helper()
	var (
		buf  [2][]byte
		next [2]uint32
		seen [2]bool
		out  []wireMsg
	)
	eachPacket(t, path, func(_ int, data []byte, _ gopacket.CaptureInfo, link layers.LinkType) {
		p := gopacket.NewPacket(data, link, gopacket.NoCopy)
		tcp, _ := p.Layer(layers.LayerTypeTCP).(*layers.TCP)
		if tcp == nil || (tcp.DstPort != port && tcp.SrcPort != port) {
			return
		}
		d := 0
		if tcp.DstPort == port {
			d = 1
		}
		if tcp.SYN {
			next[d], seen[d] = tcp.Seq+1, true
			return
		}
		payload := tcp.Payload
		if len(payload) == 0 || !seen[d] {
			return
		}
		if skip := int32(next[d] - tcp.Seq); skip > 0 {
			if int(skip) >= len(payload) {
				return
			}
			payload = payload[skip:]
		}
		next[d] += uint32(len(payload))
		buf[d] = append(buf[d], payload...)
		for {
			n := msgLen(buf[d])
			if n <= 0 || len(buf[d]) < n {
				break
			}
			out = append(out, wireMsg{fromClient: d == 1, b: append([]byte(nil), buf[d][:n]...)})
			buf[d] = buf[d][n:]
		}
	})
	return out
}

// smb2At returns the SMB2 header fields of an NBSS message, ok false when
// it is not a plain SMB2 message.
func smb2At(m []byte) (cmd uint16, status uint32, response bool, ok bool) {
	if len(m) < 4+dissect.SMB2HeaderLen || m[4] != 0xfe || m[5] != 'S' {
		return 0, 0, false, false
	}
	h := m[4:]
	return binary.LittleEndian.Uint16(h[12:]), binary.LittleEndian.Uint32(h[8:]), binary.LittleEndian.Uint32(h[16:])&1 != 0, true
}

// redrive writes msgs as one fresh TCP connection and returns the file.
func redrive(t *testing.T, msgs []wireMsg) string {
	t.Helper()
	return writeConn(t, msgs, 40001, 445, "redriven.pcap")
}

// writeConn writes msgs as one TCP connection from cport to sport into a
// capture named name in a temporary directory and returns its path.
func writeConn(t *testing.T, msgs []wireMsg, cport, sport uint16, name string) string {
	t.Helper()
	c := &ocCapture{t: t, now: time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)}
	f := c.open(cport, sport)
	for _, m := range msgs {
		f.send(m.fromClient, m.b)
	}
	f.close()
	p := filepath.Join(t.TempDir(), name)
	c.write(p)
	return p
}

// TestSMB3InterleavedSessionSetup re-drives each encrypted SMB 3.x capture
// with a second session setup slipped into the first one's exchange, as a
// client opening two sessions on one connection does: a NEGOTIATE (session
// id 0, its own message id) and its CHALLENGE (another session id) between
// the first session's CHALLENGE and AUTHENTICATE. The 3.1.1
// pre-authentication hash is per session, so the first session's keys must
// not change: every transform message still opens.
func TestSMB3InterleavedSessionSetup(t *testing.T) {
	for _, f := range smb3Captures(t) {
		if !f.Encrypted {
			continue
		}
		t.Run(f.name, func(t *testing.T) {
			msgs := smbWireMessages(t, "../pcaps/"+f.Pcap)
			var out []wireMsg
			var firstReq []byte
			inserted := false
			transforms := 0
			for _, m := range msgs {
				if len(m.b) > 8 && m.b[4] == 0xfd && m.b[5] == 'S' {
					transforms++
				}
				out = append(out, m)
				cmd, status, resp, ok := smb2At(m.b)
				if !ok || cmd != dissect.SMB2SessionSetup {
					continue
				}
				if !resp && firstReq == nil {
					firstReq = m.b
				}
				if resp && status == statusMoreProcessing && !inserted && firstReq != nil {
					req := append([]byte(nil), firstReq...)
					binary.LittleEndian.PutUint64(req[4+24:], 0x7000) // MessageId
					rsp := append([]byte(nil), m.b...)
					binary.LittleEndian.PutUint64(rsp[4+24:], 0x7000)
					sid := binary.LittleEndian.Uint64(rsp[4+40:])
					binary.LittleEndian.PutUint64(rsp[4+40:], sid^0x5a5a0000) // another session
					out = append(out, wireMsg{true, req}, wireMsg{false, rsp})
					inserted = true
				}
			}
			if !inserted || transforms == 0 {
				t.Fatalf("no session setup exchange to interleave with (%d transform messages)", transforms)
			}
			opt := Options{Credentials: f.creds(t, f.Password)}
			_, c := replayCounters(t, opt, redrive(t, out))
			if c.SMB3.EncryptedMessages != uint64(transforms) || c.SMB3.DecryptedMessages != uint64(transforms) || c.SMB3.KeyedSessions.NTLM != 1 {
				t.Errorf("smb3 %+v: want all %d transform messages opened from one NTLM-keyed session", c.SMB3, transforms)
			}
			// The same stream without the second setup opens the same.
			_, c0 := replayCounters(t, opt, redrive(t, msgs))
			if c0.SMB3 != c.SMB3 {
				t.Errorf("re-driven without interleaving: %+v, with: %+v", c0.SMB3, c.SMB3)
			}
		})
	}
}

// TestSMB3MultichannelBinding re-drives each encrypted SMB 3.x capture over
// two connections: the session is set up on the first, then a second
// connection negotiates and binds to it (SESSION_SETUP with
// SMB2_SESSION_FLAG_BINDING and the session's id) and carries the rest of
// the encrypted traffic. A bound channel keeps the session's keys (MS-SMB2
// 3.3.5.5.2), so every transform message on either connection opens.
func TestSMB3MultichannelBinding(t *testing.T) {
	for _, f := range smb3Captures(t) {
		if !f.Encrypted {
			continue
		}
		t.Run(f.name, func(t *testing.T) {
			msgs := smbWireMessages(t, "../pcaps/"+f.Pcap)
			var negReq, negResp, setupReq, setupResp []byte
			split := -1
			var transforms []int
			for i, m := range msgs {
				if len(m.b) > 8 && m.b[4] == 0xfd && m.b[5] == 'S' {
					transforms = append(transforms, i)
					continue
				}
				cmd, status, resp, ok := smb2At(m.b)
				switch {
				case !ok:
				case cmd == dissect.SMB2Negotiate && !resp:
					negReq = m.b
				case cmd == dissect.SMB2Negotiate && resp:
					negResp = m.b
				case cmd == dissect.SMB2SessionSetup && !resp:
					setupReq = m.b
				case cmd == dissect.SMB2SessionSetup && resp && status == 0:
					setupResp = m.b
				}
			}
			if negReq == nil || negResp == nil || setupReq == nil || setupResp == nil || len(transforms) < 4 {
				t.Fatalf("capture lacks a negotiate, a session setup or transform messages (%d)", len(transforms))
			}
			split = transforms[len(transforms)/2]
			bindReq := append([]byte(nil), setupReq...)
			bindReq[4+dissect.SMB2HeaderLen+2] |= smb2SessionFlagBinding
			c := &ocCapture{t: t, now: time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)}
			a := c.open(40001, 445)
			for _, m := range msgs[:split] {
				a.send(m.fromClient, m.b)
			}
			// Pure ACKs on the first connection push the binding past
			// the dispatcher's first rounds of batches (shardMaxPackets).
			for range 3 * shardMaxPackets {
				c.frame(true, a, "A", nil)
			}
			b := c.open(otherWorkerPort(t, 40001), 445)
			for _, m := range []wireMsg{{true, negReq}, {false, negResp}, {true, bindReq}, {false, setupResp}} {
				b.send(m.fromClient, m.b)
			}
			for _, m := range msgs[split:] {
				b.send(m.fromClient, m.b)
			}
			a.close()
			b.close()
			p := filepath.Join(t.TempDir(), "bound.pcap")
			c.write(p)
			// With 2 and 4 workers the second connection is on another
			// worker than the first (otherWorkerPort): the keys cross.
			opt := Options{Credentials: f.creds(t, f.Password)}
			n := uint64(len(transforms))
			var want []byte
			for _, workers := range []int{1, 2, 4} {
				out, st := replayStats(t, opt, workers, p)
				if st.SMB3Encrypted != n || st.SMB3Decrypted != n || st.Auth.SMB3KeyedNTLM != 1 {
					t.Errorf("%d workers: %d of %d transform messages opened, %d NTLM-keyed sessions; want all, with the one session's keys",
						workers, st.SMB3Decrypted, n, st.Auth.SMB3KeyedNTLM)
				}
				if want == nil {
					want = out
				} else if !bytes.Equal(out, want) {
					t.Errorf("%d workers: events differ from one worker's", workers)
				}
			}
		})
	}
}

// TestKerberosSMB3Captures replays the Kerberos lab's SMB3-encrypted
// sessions (smbclient with a Kerberos ticket against Samba: 3.0 and 3.1.1,
// CCM and GCM, AES-128 and AES-256): with the keytab every transform message
// opens with keys from the ticket's session key and the file copy shows,
// attributed to the ticket's client; without it nothing opens.
func TestKerberosSMB3Captures(t *testing.T) {
	names, _ := filepath.Glob("../pcaps/krb-smb3-*.json")
	if len(names) == 0 {
		t.Fatal("no pcaps/krb-smb3-*.json")
	}
	for _, n := range names {
		t.Run(strings.TrimSuffix(filepath.Base(n), ".json"), func(t *testing.T) {
			b, err := os.ReadFile(n)
			if err != nil {
				t.Fatal(err)
			}
			f := &smb3Facts{name: strings.TrimSuffix(filepath.Base(n), ".json")}
			var krb struct {
				Keytab   string
				Kerberos struct{ CName, CRealm string }
			}
			if err := json.Unmarshal(b, f); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(b, &krb); err != nil {
				t.Fatal(err)
			}
			if !f.Encrypted || len(f.TransformFrames) == 0 || krb.Keytab == "" || krb.Kerberos.CName == "" {
				t.Fatal("facts lack the encryption, the keytab or the ticket's client")
			}
			opt, _ := (&sealedFacts{name: f.name, Keytab: krb.Keytab}).secret(t)
			rec, st := smb3Replay(t, opt, f, nil)
			n := uint64(len(f.TransformFrames))
			if st.SMB3Encrypted != n || st.SMB3Decrypted != n || st.Auth.SMB3KeyedKerberos != 1 || st.Auth.TicketsOpened != 1 {
				t.Errorf("transform messages %d, opened %d, Kerberos-keyed sessions %d, tickets %d; want %d, %d, 1, 1",
					st.SMB3Encrypted, st.SMB3Decrypted, st.Auth.SMB3KeyedKerberos, st.Auth.TicketsOpened, n, n)
			}
			// The user is the ticket's client principal in its realm.
			byTicket := *f
			byTicket.User, byTicket.Domain = krb.Kerberos.CName, krb.Kerberos.CRealm
			// smbclient names the share in lower case; the sensor reports
			// share names upper-cased (newTree).
			byTicket.Share = strings.ToUpper(f.Share)
			byTicket.checkFileOps(t, rec)

			rec, st = smb3Replay(t, Options{}, f, nil)
			if st.SMB3Decrypted != 0 || len(rec.files) != 0 || st.Auth.TicketsUnknownKey != 1 {
				t.Errorf("without the keytab: %d opened, %d file operations, %d tickets without key", st.SMB3Decrypted, len(rec.files), st.Auth.TicketsUnknownKey)
			}
		})
	}
}

// otherWorkerPort returns a client port whose connection to the lab
// server (ocCapture's addresses, port 445) the replay dispatcher puts on
// another worker than port's, with 2 workers and so with any even number.
func otherWorkerPort(t *testing.T, port uint16) uint16 {
	t.Helper()
	h := func(p uint16) uint64 { return flowHash(ocClientIP.To4(), ocServerIP.To4(), p, 445) }
	for p := port + 1; p != 0; p++ {
		if h(p)%2 != h(port)%2 {
			return p
		}
	}
	t.Fatal("no client port hashes to another worker")
	return 0
}

// replayStats replays files with the given number of workers and returns
// stdout and the run's counters.
func replayStats(t *testing.T, opt Options, workers int, files ...string) ([]byte, Stats) {
	t.Helper()
	var buf bytes.Buffer
	out := output.NewOutput(output.NewWriterSink(&buf, false))
	opt.PanicHook = func(p any) { t.Errorf("panic: %v", p) }
	res := Replay(context.Background(), ReplayConfig{Options: opt, Detect: detect.Options{Observer: "shard"}, Output: out, Workers: workers}, files)
	if err := out.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, err := range res.Errors {
		t.Errorf("replay: %v", err)
	}
	return buf.Bytes(), res.Stats
}

// TestSessionKeyStoreBound: the store keeps the newest sessions up to its
// bound and replaces a session's keys in place.
func TestSessionKeyStoreBound(t *testing.T) {
	s := newSessionKeyStore(3)
	srv := netip.MustParseAddr("192.0.2.1")
	k := make([]dissect.SMB3Keys, 5)
	for i := range k {
		s.put(srv, uint64(i), &k[i])
	}
	s.put(srv, 4, &k[0])
	if s.len() != 3 || s.get(srv, 0) != nil || s.get(srv, 1) != nil || s.get(srv, 2) != &k[2] || s.get(srv, 4) != &k[0] {
		t.Errorf("store holds %d sessions; want the 3 newest, session 4 replaced", s.len())
	}
	if s.get(netip.MustParseAddr("192.0.2.2"), 2) != nil {
		t.Error("keys of another server's session id returned")
	}
}
