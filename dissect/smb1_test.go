package dissect

import (
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

// SMB1 messages from captures, NBSS header included as on the wire
// (tshark -T fields -e tcp.payload). Frame numbers are the capture's.
const (
	// pcaps/impacket-at-smb1.pcap frame 6: NEGOTIATE response, NT LM 0.12,
	// extended security, MaxBufferSize 64000, capabilities 0x80000074.
	hexSMB1NegotiateResp = "00000073ff534d4272000000008000c8000000000000000000000000ffff7e4f00000000110000030100010000fa000000000100000000007400008000000000000000000000002e0041414141414141414141414141414141601c06062b0601050502a0123010a00e300c060a2b06010401823702020a"
	// frame 10: SESSION_SETUP_ANDX request, NTLMSSP_AUTH for LAB\alice.
	hexSMB1SessionSetupAuth = "00000188ff534d427300000000180148000000000000000000000000ffff7e4f0a0000000cff00000000f0020001000000000042010000000044c000804d01a182013e3082013aa2820136048201324e544c4d53535000030000001800180068000000b200b2008000000006000600400000000a000a004600000018001800500000000000000032010000050288a04c004100420061006c0069006300650054005300430048002d004c00410042002d0043004c004900a0d89854949f62bb73634faa584adf37656367594b6c3877df702ed0624f86aff4c3d31bd6c457550101000000000000002a26e77e7edd01656367594b6c3877000000000100180054005300430048002d004c00410042002d005300520056000300180054005300430048002d004c00410042002d00530052005600020006004c0041004200040006004c004100420007000800002a26e77e7edd010900220063006900660073002f0054005300430048002d004c00410042002d005300520056000000000000000000556e69780053616d626100"
	// frame 11: SESSION_SETUP_ANDX response, success, UID 10.
	hexSMB1SessionSetupResp = "0000007aff534d427300000000800148000000000000000000000000ffff7e4f0a00000004ff000000000009004f00a1073005a0030a010057696e646f7773205365727665722032303232205374616e646172642032303334380057696e646f7773205365727665722032303232205374616e6461726420323033343800"
	// frame 12: TREE_CONNECT_ANDX request \\10.77.0.2\IPC$, service "?????".
	hexSMB1TreeConnect = "00000054ff534d4275000000001801c8000000000000000000000000ffff7e4f0a00000004ff000000000001002900005c005c00310030002e00370037002e0030002e0032005c00490050004300240000003f3f3f3f3f00"
	// frame 13: TREE_CONNECT_ANDX response, service "IPC", TID 1.
	hexSMB1TreeConnectResp = "00000036ff534d4275000000008001c800000000000000000000000001007e4f0a00000003ff00000001000d00495043004e0054004600530000"
	// frame 14: NT_CREATE_ANDX request for \atsvc (Unicode, pad byte).
	hexSMB1NTCreate = "00000062ff534d42a2000000001801c800000000000000000000000001007e4f0a00000018ff000000000c0016000000000000000300000000000000000000008000000001000000010000004000000002000000000f00005c00610074007300760063000000"
	// frame 15: NT_CREATE_ANDX response, FID 0x0001, message-mode pipe.
	hexSMB1NTCreateResp = "00000067ff534d42a2000000008001c800000000000000000000000001007e4f0a00000022ff00000000010001000000000000000000000000000000000000000000000000000000000000000000000080000000001000000000000000000000000000000200ff05000000"
	// frame 16: WRITE_ANDX request, FID 1, 72 bytes at 63: a DCE-RPC bind.
	hexSMB1WriteBind = "00000087ff534d422f000000001801c800000000000000000000000001007e4f0a0000000eff000000010000000000ff00000008004800000048003f0000000000480005000b03100000004800000001000000b810b8100000000001000000000001008206f71f510ae830076d740be8cee98b01000000045d888aeb1cc9119fe808002b10486002000000"
	// frame 19: READ_ANDX response, 68 bytes at 59: the bind_ack.
	hexSMB1ReadBindAck = "0000007fff534d422e000000008001c800000000000000000000000001007e4f0a0000000cff000000ffff0000000044003b0000000000000000000000440005000c03100000004400000001000000b810b810d51e00000c005c504950455c61747376630000000100000000000000045d888aeb1cc9119fe808002b10486002000000"

	// B_zeek__raw_ntlm_in_smb.pcap frame 31: TRANSACTION TransactNmPipe on
	// FID 0x4000 carrying a srvsvc bind (72 bytes at 84).
	hexSMB1TransBind = "0000009cff534d4225000000000801c800000000000000000000000000080100000805001000004800000000100000000000000000000000005400480054000200260000405900005c0050004900500045005c000000000005000b0310000000480000000300000000100010000000000100000000000100c84f324b7016d30112785a47bf6ee18803000000045d888aeb1cc9119fe808002b10486002000000"
	// frame 32: its response, the bind_ack (68 bytes at 56).
	hexSMB1TransBindAck = "0000007cff534d4225000000008801c800000000000000000000000000080100000805000a000044000000000038000000440038000000000045004805000c03100000004400000003000000001000106c1300000d005c504950455c73727673766300000100000000000000045d888aeb1cc9119fe808002b10486002000000"
	// frame 158: NT_CREATE_ANDX chained with READ_ANDX (FID 0 = the
	// handle just opened), name "\Sample Pictures.lnk:com.apple...".
	hexSMB1CreateRead = "000000ddff534d42a2000000000801c80000000000000000000000000108010000082f00182e00c200006c0000000000000000000100000000000000000000008000000007000000010000000000000002000000006f00005c00530061006d0070006c0065002000500069006300740075007200650073002e006c006e006b003a0063006f006d002e006100700070006c0065002e004c00610075006e0063006800530065007200760069006300650073002e004f00700065006e00570069007400680000000cff00000000000000000000100010000000000010000000000000"

	// C_suricata-verify__filestore-filecontainer-smb.pcap frame 1691: the
	// first 80 bytes of a 4360-byte WRITE_ANDX in raw mode starting a pipe
	// message (WriteMode 0x000c, Remaining 19032, 4292 data bytes at 64).
	hexSMB1WriteRawHead = "00001104ff534d422f000000001807c80000000000000000000000000308fffe000883f80eff00dede0fc000000000ffffffff0c00584a0000c410400000000000c510ee584a584a0000c80300005300"
)

// smb1Msg returns the SMB message of a hex NBSS frame.
func smb1Msg(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b[NBSSHeaderLen:]
}

// smb1First decodes the header and the first command block.
func smb1First(t testing.TB, s string) ([]byte, *SMB1Header, *SMB1Command) {
	t.Helper()
	msg := smb1Msg(t, s)
	var h SMB1Header
	if err := DecodeSMB1Header(msg, &h); err != nil {
		t.Fatal(err)
	}
	var ch SMB1Chain
	ch.Start(msg, &h)
	var cmd SMB1Command
	if !ch.Next(&cmd) {
		t.Fatalf("no command block: %v", ch.Err())
	}
	return msg, &h, &cmd
}

func TestSMB1Header(t *testing.T) {
	msg := smb1Msg(t, hexSMB1NTCreateResp)
	var h SMB1Header
	if err := DecodeSMB1Header(msg, &h); err != nil {
		t.Fatal(err)
	}
	want := SMB1Header{Command: SMB1NTCreateAndX, Flags: 0x80, Flags2: 0xc801, PID: 0x4f7e, TID: 1, UID: 10, MID: 0}
	if h != want {
		t.Fatalf("header %+v, want %+v", h, want)
	}
	if !h.Response() || !h.Unicode() {
		t.Fatal("reply and unicode flags not seen")
	}
	if err := DecodeSMB1Header(msg[:31], &h); !errors.Is(err, ErrTruncated) {
		t.Fatalf("short header: %v", err)
	}
	if err := DecodeSMB1Header(smb1Msg(t, "00000040fe534d42"+strings.Repeat("00", 60)), &h); !errors.Is(err, ErrMalformed) {
		t.Fatalf("SMB2 magic: %v", err)
	}
}

func TestSMB1Negotiate(t *testing.T) {
	_, _, cmd := smb1First(t, hexSMB1NegotiateResp)
	var r SMB1NegotiateResponse
	if err := ParseSMB1NegotiateResponse(cmd, &r); err != nil {
		t.Fatal(err)
	}
	if r.DialectIndex != 0 || r.MaxBufferSize != 64000 || r.Capabilities != 0x80000074 || r.SecurityMode != 3 {
		t.Fatalf("negotiate %+v", r)
	}
	if FindNTLMSSP(r.SecurityBlob) != nil || len(r.SecurityBlob) != 30 || r.SecurityBlob[0] != 0x60 {
		t.Fatalf("security blob %x", r.SecurityBlob)
	}
}

func TestSMB1SessionSetupExtended(t *testing.T) {
	msg, h, cmd := smb1First(t, hexSMB1SessionSetupAuth)
	var s SMB1SessionSetup
	if err := ParseSMB1SessionSetupRequest(msg, h, cmd, &s); err != nil {
		t.Fatal(err)
	}
	if !s.Extended || s.MaxBufferSize != 61440 || len(s.SecurityBlob) != 322 || s.NativeOS != "Unix" || s.NativeLanMan != "Samba" {
		t.Fatalf("session setup %+v", s)
	}
	m, err := ParseNTLMSSP(FindNTLMSSP(s.SecurityBlob))
	if err != nil {
		t.Fatal(err)
	}
	if m.Type != NTLMAuthenticate || m.User != "alice" || m.Domain != "LAB" || !m.NTLMv2() {
		t.Fatalf("NTLMSSP %+v", m)
	}

	msg, h, cmd = smb1First(t, hexSMB1SessionSetupResp)
	var r SMB1SessionSetupResponse
	if err := ParseSMB1SessionSetupResponse(msg, h, cmd, &r); err != nil {
		t.Fatal(err)
	}
	if h.UID != 10 || r.Action != 0 || len(r.SecurityBlob) != 9 {
		t.Fatalf("response uid %d %+v", h.UID, r)
	}
}

// TestSMB1SessionSetupRaw builds an NT LM 0.12 request without extended
// security the way MS-CIFS 2.2.4.53.1 lays it out: 13 words, the LM and
// NTLM responses, a pad to align Unicode, then account, domain, native
// OS and LAN manager. No capture in the corpus has one (the raw_ntlm one
// carries raw NTLMSSP in an extended-security blob).
func TestSMB1SessionSetupRaw(t *testing.T) {
	utf16z := func(s string) string {
		var b strings.Builder
		for _, c := range s {
			b.WriteString(hex.EncodeToString([]byte{byte(c), 0}))
		}
		return b.String() + "0000"
	}
	ntv2 := strings.Repeat("11", 16) + "0101000000000000" + strings.Repeat("22", 20)
	bytesHex := strings.Repeat("aa", 24) + ntv2 + "00" + utf16z("bob") + utf16z("CORP") + utf16z("Windows 5.1") + utf16z("Windows 2000 LAN Manager")
	nb := len(bytesHex) / 2
	words := "ff000000" + "0411" + "3200" + "0000" + "00000000" + "1800" + hex.EncodeToString([]byte{byte(len(ntv2) / 2), 0}) + "00000000" + "d4000000"
	msgHex := "ff534d4273000000000801c8" + strings.Repeat("00", 12) + "ffff" + "feff" + "0000" + "4000" +
		"0d" + words + hex.EncodeToString([]byte{byte(nb), byte(nb >> 8)}) + bytesHex
	msg, h, cmd := smb1First(t, "00000000"+msgHex)
	var s SMB1SessionSetup
	if err := ParseSMB1SessionSetupRequest(msg, h, cmd, &s); err != nil {
		t.Fatal(err)
	}
	if s.Extended || s.Account != "bob" || s.Domain != "CORP" || s.NativeOS != "Windows 5.1" || s.NativeLanMan != "Windows 2000 LAN Manager" {
		t.Fatalf("raw session setup %+v", s)
	}
	if len(s.OEMPassword) != 24 || len(s.UnicodePassword) != len(ntv2)/2 || s.Capabilities != 0xd4 || s.MaxBufferSize != 0x1104 {
		t.Fatalf("raw session setup fields %+v", s)
	}
	// Passwords longer than the bytes are refused, not sliced past them.
	bad := append([]byte(nil), msg...)
	bad[33+14] = 0xff
	if err := ParseSMB1SessionSetupRequest(bad, h, cmd2(t, bad, h), &s); !errors.Is(err, ErrTruncated) {
		t.Fatalf("oversized password: %v", err)
	}
}

func cmd2(t *testing.T, msg []byte, h *SMB1Header) *SMB1Command {
	var ch SMB1Chain
	ch.Start(msg, h)
	var cmd SMB1Command
	if !ch.Next(&cmd) {
		t.Fatal(ch.Err())
	}
	return &cmd
}

func TestSMB1TreeConnect(t *testing.T) {
	msg, h, cmd := smb1First(t, hexSMB1TreeConnect)
	p, svc, err := ParseSMB1TreeConnectRequest(msg, h, cmd)
	if err != nil || p != `\\10.77.0.2\IPC$` || svc != "?????" {
		t.Fatalf("tree connect %q %q %v", p, svc, err)
	}
	msg, h, cmd = smb1First(t, hexSMB1TreeConnectResp)
	svc, err = ParseSMB1TreeConnectResponse(msg, cmd)
	if err != nil || svc != "IPC" || h.TID != 1 {
		t.Fatalf("tree connect response %q tid %d %v", svc, h.TID, err)
	}
}

func TestSMB1NTCreate(t *testing.T) {
	msg, h, cmd := smb1First(t, hexSMB1NTCreate)
	var c SMB1CreateRequest
	if err := ParseSMB1NTCreateRequest(msg, h, cmd, &c); err != nil {
		t.Fatal(err)
	}
	if c.Name != `\atsvc` || c.DesiredAccess != 0x0003 || c.CreateDisposition != 1 || c.ShareAccess != 1 || c.CreateOptions != 0x40 {
		t.Fatalf("create %+v", c)
	}
	_, _, cmd = smb1First(t, hexSMB1NTCreateResp)
	var r SMB1CreateResponse
	if err := ParseSMB1NTCreateResponse(cmd, &r); err != nil {
		t.Fatal(err)
	}
	if r.FID != 1 || r.FileType != SMB1FileTypeMessageModePipe || !r.Pipe() || r.Directory {
		t.Fatalf("create response %+v", r)
	}
}

func TestSMB1AndXChain(t *testing.T) {
	msg := smb1Msg(t, hexSMB1CreateRead)
	var h SMB1Header
	if err := DecodeSMB1Header(msg, &h); err != nil {
		t.Fatal(err)
	}
	var ch SMB1Chain
	ch.Start(msg, &h)
	var cmds []uint8
	var cmd SMB1Command
	for ch.Next(&cmd) {
		cmds = append(cmds, cmd.Command)
		switch cmd.Command {
		case SMB1NTCreateAndX:
			var c SMB1CreateRequest
			if err := ParseSMB1NTCreateRequest(msg, &h, &cmd, &c); err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(c.Name, `\Sample Pictures.lnk:com.apple.`) {
				t.Fatalf("name %q", c.Name)
			}
		case SMB1ReadAndX:
			if cmd.Offset != 194 {
				t.Fatalf("READ_ANDX at %d, want 194", cmd.Offset)
			}
			fid, off, n, err := ParseSMB1ReadRequest(&cmd)
			if err != nil || fid != 0 || off != 0 || n != 4096 {
				t.Fatalf("read %d %d %d %v", fid, off, n, err)
			}
		}
	}
	if ch.Err() != nil || len(cmds) != 2 || cmds[0] != SMB1NTCreateAndX || cmds[1] != SMB1ReadAndX {
		t.Fatalf("chain %x err %v", cmds, ch.Err())
	}

	// An AndX offset pointing back must end the walk with an error.
	loop := append([]byte(nil), msg...)
	loop[194+3], loop[194+4] = 0x2e, 0 // READ_ANDX chains to itself
	loop[194+1] = SMB1ReadAndX
	ch.Start(loop, &h)
	n := 0
	for ch.Next(&cmd) {
		n++
	}
	if !errors.Is(ch.Err(), ErrMalformed) || n != 2 {
		t.Fatalf("backward AndX: %d blocks, %v", n, ch.Err())
	}
}

func TestSMB1WriteRead(t *testing.T) {
	msg, _, cmd := smb1First(t, hexSMB1WriteBind)
	var w SMB1Write
	if err := ParseSMB1WriteRequest(cmd, &w); err != nil {
		t.Fatal(err)
	}
	if w.FID != 1 || w.DataLength != 72 || w.DataOffset != 63 || w.WriteMode != SMB1WriteMessageStart || w.Remaining != 72 {
		t.Fatalf("write %+v", w)
	}
	d, err := w.PipeData(msg)
	if err != nil || len(d) != 72 || d[0] != 5 || d[2] != 11 { // DCE-RPC v5 bind
		t.Fatalf("pipe data %x %v", d, err)
	}

	msg, _, cmd = smb1First(t, hexSMB1ReadBindAck)
	off, n, err := ParseSMB1ReadResponse(cmd)
	if err != nil || off != 59 || n != 68 || msg[off] != 5 || msg[off+2] != 12 { // bind_ack
		t.Fatalf("read response %d %d %v", off, n, err)
	}

	// Only the head of a large raw-mode write: fields decode, data is
	// beyond what is held.
	msg, _, cmd = smb1First(t, hexSMB1WriteRawHead)
	if err := ParseSMB1WriteRequest(cmd, &w); err != nil {
		t.Fatal(err)
	}
	if w.FID != 0xc00f || w.WriteMode != SMB1WriteRawMode|SMB1WriteMessageStart || w.Remaining != 19032 || w.DataLength != 4292 || w.DataOffset != 64 {
		t.Fatalf("raw write %+v", w)
	}
	if _, err := w.PipeData(msg); !errors.Is(err, ErrTruncated) {
		t.Fatalf("data beyond the head: %v", err)
	}
	// Had all of it been held, the 2-byte message length (19032) is not
	// pipe data.
	w.DataLength = len(msg) - w.DataOffset
	d, err = w.PipeData(msg)
	raw, _ := w.Data(msg)
	if err != nil || len(d) != len(raw)-2 || raw[0] != 0x58 || raw[1] != 0x4a {
		t.Fatalf("raw pipe data %x %v", d, err)
	}
}

func TestSMB1TransactNmPipe(t *testing.T) {
	msg, h, cmd := smb1First(t, hexSMB1TransBind)
	var tr SMB1Trans
	if err := ParseSMB1TransRequest(msg, h, cmd, &tr); err != nil {
		t.Fatal(err)
	}
	sub, _ := tr.SetupWord(0)
	fid, _ := tr.SetupWord(1)
	if sub != TransactNmPipe || fid != 0x4000 || tr.Name != `\PIPE\` || len(tr.Data) != 72 || tr.Data[2] != 11 || tr.TotalDataCount != 72 {
		t.Fatalf("transaction %+v", tr)
	}
	if _, _, ok := SMB1SetDisposition(&tr); ok {
		t.Fatal("TransactNmPipe taken for a disposition")
	}
	msg, _, cmd = smb1First(t, hexSMB1TransBindAck)
	interim, err := ParseSMB1TransResponse(msg, cmd, &tr)
	if err != nil || interim || len(tr.Data) != 68 || tr.Data[2] != 12 || tr.TotalDataCount != 68 || tr.DataDisplacement != 0 {
		t.Fatalf("transaction response %+v %v", tr, err)
	}
}

// TestSMB1Truncations cuts every capture message at every length: each
// parser either succeeds or returns a *dissect.Error, never panics.
func TestSMB1Truncations(t *testing.T) {
	for _, s := range smb1Seeds {
		full := smb1Msg(t, s)
		for n := 0; n <= len(full); n++ {
			smb1ParseAll(t, full[:n])
		}
	}
}

var smb1Seeds = []string{hexSMB1NegotiateResp, hexSMB1SessionSetupAuth, hexSMB1SessionSetupResp, hexSMB1TreeConnect,
	hexSMB1TreeConnectResp, hexSMB1NTCreate, hexSMB1NTCreateResp, hexSMB1WriteBind, hexSMB1ReadBindAck,
	hexSMB1TransBind, hexSMB1TransBindAck, hexSMB1CreateRead, hexSMB1WriteRawHead}

// smb1ParseAll runs every parser that fits each block of msg and checks
// the errors are typed and the slices stay inside msg.
func smb1ParseAll(t *testing.T, msg []byte) {
	var h SMB1Header
	if err := DecodeSMB1Header(msg, &h); err != nil {
		checkErr(t, err)
		return
	}
	var ch SMB1Chain
	ch.Start(msg, &h)
	var cmd SMB1Command
	blocks := 0
	for ch.Next(&cmd) {
		blocks++
		if blocks > MaxSMB1AndX {
			t.Fatal("chain walk exceeded its bound")
		}
		if cmd.Offset < SMB1HeaderLen || cmd.Offset >= len(msg) || cmd.BytesOffset > len(msg) || cmd.BytesOffset+len(cmd.Bytes) > len(msg) {
			t.Fatalf("block out of message: %+v (len %d)", cmd, len(msg))
		}
		var (
			s   SMB1SessionSetup
			sr  SMB1SessionSetupResponse
			c   SMB1CreateRequest
			cr  SMB1CreateResponse
			w   SMB1Write
			tr  SMB1Trans
			neg SMB1NegotiateResponse
		)
		checkErr(t, ParseSMB1NegotiateResponse(&cmd, &neg))
		checkErr(t, ParseSMB1SessionSetupRequest(msg, &h, &cmd, &s))
		checkErr(t, ParseSMB1SessionSetupResponse(msg, &h, &cmd, &sr))
		_, _, err := ParseSMB1TreeConnectRequest(msg, &h, &cmd)
		checkErr(t, err)
		_, err = ParseSMB1TreeConnectResponse(msg, &cmd)
		checkErr(t, err)
		checkErr(t, ParseSMB1NTCreateRequest(msg, &h, &cmd, &c))
		checkErr(t, ParseSMB1OpenRequest(msg, &h, &cmd, &c))
		checkErr(t, ParseSMB1NTCreateResponse(&cmd, &cr))
		checkErr(t, ParseSMB1OpenResponse(&cmd, &cr))
		if err := ParseSMB1WriteRequest(&cmd, &w); err == nil {
			if d, err := w.PipeData(msg); err == nil && len(d) > len(msg) {
				t.Fatal("pipe data longer than the message")
			} else {
				checkErr(t, err)
			}
		}
		_, _, _, err = ParseSMB1ReadRequest(&cmd)
		checkErr(t, err)
		if off, n, err := ParseSMB1ReadResponse(&cmd); err != nil {
			checkErr(t, err)
		} else if off < 0 || n < 0 {
			t.Fatalf("read response %d %d", off, n)
		}
		checkErr(t, ParseSMB1TransRequest(msg, &h, &cmd, &tr))
		SMB1SetDisposition(&tr)
		checkErr(t, ParseSMB1TransSecondary(msg, &cmd, &tr))
		_, err = ParseSMB1TransResponse(msg, &cmd, &tr)
		checkErr(t, err)
		_, err = ParseSMB1Close(&cmd)
		checkErr(t, err)
		_, err = ParseSMB1DeleteRequest(msg, &h, &cmd)
		checkErr(t, err)
	}
	checkErr(t, ch.Err())
}

func checkErr(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		return
	}
	var de *Error
	if !errors.As(err, &de) || de.Layer != "smb1" {
		t.Fatalf("untyped error %v", err)
	}
}

func FuzzSMB1(f *testing.F) {
	for _, s := range smb1Seeds {
		f.Add(smb1Msg(f, s))
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		smb1ParseAll(t, msg)
	})
}

func BenchmarkSMB1WriteChain(b *testing.B) {
	msg := smb1Msg(b, hexSMB1WriteBind)
	b.ReportAllocs()
	b.SetBytes(int64(len(msg)))
	var (
		h   SMB1Header
		ch  SMB1Chain
		cmd SMB1Command
		w   SMB1Write
	)
	for i := 0; i < b.N; i++ {
		if err := DecodeSMB1Header(msg, &h); err != nil {
			b.Fatal(err)
		}
		ch.Start(msg, &h)
		for ch.Next(&cmd) {
			if err := ParseSMB1WriteRequest(&cmd, &w); err != nil {
				b.Fatal(err)
			}
			if _, err := w.PipeData(msg); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// TestSMB1PipePathAllocs pins the per-message pipe path (header, chain,
// WRITE_ANDX, READ_ANDX) at zero allocations.
func TestSMB1PipePathAllocs(t *testing.T) {
	wmsg := smb1Msg(t, hexSMB1WriteBind)
	rmsg := smb1Msg(t, hexSMB1ReadBindAck)
	var (
		h   SMB1Header
		ch  SMB1Chain
		cmd SMB1Command
		w   SMB1Write
	)
	n := testing.AllocsPerRun(100, func() {
		_ = DecodeSMB1Header(wmsg, &h)
		ch.Start(wmsg, &h)
		for ch.Next(&cmd) {
			_ = ParseSMB1WriteRequest(&cmd, &w)
			_, _ = w.PipeData(wmsg)
		}
		_ = DecodeSMB1Header(rmsg, &h)
		ch.Start(rmsg, &h)
		for ch.Next(&cmd) {
			_, _, _ = ParseSMB1ReadResponse(&cmd)
		}
	})
	if n != 0 {
		t.Fatalf("%v allocations per message pair", n)
	}
}
