package dissect

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"reflect"
	"testing"
)

// SMB2 messages (NBSS header removed) from the shared captures; most come
// from at.exe's NetrJobAdd over SMB 3.1.1 in
// A_suricata-verify__dcerpc-smb-ctxid.pcap, the compound chain from
// C_zeek__smb2-multiple-pdus.pcap.
const (
	// A_suricata-verify__dcerpc-smb-ctxid.pcap frame 7: SMB2 NEGOTIATE response, dialect 3.1.1, AES-128-GCM (NBSS header removed)
	hexNegotiateResp = `
	fe534d4240000000000000000000010001000000000000000100000000000000
	fffe000000000000000000000000000000000000000000000000000000000000
	4100030011030200383a7869b8fce04db60af6dc24d4f9642f00000000008000
	000080000000800094c74bb257e6d901da55501543e6d90180007800f8000000
	607606062b0601050502a06c306aa03c303a060a2b06010401823702021e0609
	2a864882f71201020206092a864886f712010202060a2a864886f71201020203
	060a2b06010401823702020aa32a3028a0261b246e6f745f646566696e65645f
	696e5f5246433431373840706c656173655f69676e6f72650100260000000000
	0100200001006bffe42e46ecd8a3c933e7fea0e127c0d3294c579c4c303d5daf
	14a12fb30d700000020004000000000001000200`
	// frame 8: SESSION_SETUP request, NTLMSSP_NEGOTIATE in a 74-byte blob at 0x58
	hexSessionSetupReq = `
	fe534d4240000100000000000100210010000000000000000200000000000000
	fffe000000000000000000000000000000000000000000000000000000000000
	19000002010000000000000058004a000000000000000000604806062b060105
	0502a03e303ca00e300c060a2b06010401823702020aa22a04284e544c4d5353
	500001000000978208e2000000000000000000000000000000000a00614a0000
	000f`
	// frame 12: TREE_CONNECT request \\192.168.56.101\IPC$, message id 4
	hexTreeConnectReq = `
	fe534d4240000100000000000300010018000000000000000400000000000000
	fffe0000000000001100000800740000ff4d9c30e416f57f45bfeee436e11ae6
	0900000048002a005c005c003100390032002e003100360038002e0035003600
	2e003100300031005c004900500043002400`
	// frame 13: TREE_CONNECT response, tree 1, share type pipe
	hexTreeConnectResp = `
	fe534d4240000100000000000300010019000000000000000400000000000000
	fffe0000010000001100000800740000cc55dae8a82e28301855520aff8c8de7
	100002003000000000000000ff011f01`
	// frame 16: CREATE request "atsvc", access 0x0012019f, disposition open
	hexCreateReq = `
	fe534d4240000100000000000500010038000000000000000600000000000000
	fffe00000100000011000008007400007445bc8980560a496754bd4f65182dfe
	3900000002000000000000000000000000000000000000009f01120000000000
	07000000010000000000000078000a0000000000000000006100740073007600
	6300`
	// frame 17: CREATE response, end of file 0
	hexCreateResp = `
	fe534d4240000100000000000500010039000000000000000600000000000000
	fffe0000010000001100000800740000e4c2cc2b7218e61aa37b0d5eb5823223
	5900000001000000000000000000000000000000000000000000000000000000
	0000000000000000001000000000000000000000000000008000000073007600
	c50000001d000000010000001d0000000000000000000000`
	// frame 21: WRITE request of 160 bytes at 0x70 (the DCE-RPC bind)
	hexWriteReq = `
	fe534d4240000100000000000900010038000000000000000800000000000000
	fffe000001000000110000080074000031be0488ec9ec69c62de19aa410d4f7e
	31007000a00000000000000000000000c50000001d000000010000001d000000
	0000000000000000000000000000000005000b0310000000a000000002000000
	b810b8100000000003000000000001008206f71f510ae830076d740be8cee98b
	01000000045d888aeb1cc9119fe808002b10486002000000010001008206f71f
	510ae830076d740be8cee98b0100000033057171babe37498319b5dbef9ccc36
	01000000020001008206f71f510ae830076d740be8cee98b010000002c1cb76c
	12984045030000000000000001000000`
	// frame 23: READ request of 1024 bytes
	hexReadReq = `
	fe534d4240000100000000000800010038000000000000000900000000000000
	fffe0000010000001100000800740000329d5a5d9fbee04aa3c89f7f9d131a66
	31005000000400000000000000000000c50000001d000000010000001d000000
	0000000000000000000000000000000000`
	// frame 24: READ response, 116 bytes at 0x50 (the bind_ack)
	hexReadResp = `
	fe534d4240000100000000000800010039000000000000000900000000000000
	fffe0000010000001100000800740000392d82529669a3273980a76d45ed0826
	1100500074000000000000000000000005000c03100000007400000002000000
	b810b8104b1400000c005c504950455c6174737663002d000300000002000200
	00000000000000000000000000000000000000000000000033057171babe3749
	8319b5dbef9ccc36010000000300030000000000000000000000000000000000
	00000000`
	// frame 25: IOCTL FSCTL_PIPE_TRANSCEIVE request, 234 bytes in at 0x78 (NetrJobAdd)
	hexIOCTLReq = `
	fe534d4240000100000000000b00010038000000000000000a00000000000000
	fffe0000010000001100000800740000038d4d8bfb80f953eef6dba627694523
	3900000017c01100c50000001d000000010000001d00000078000000ea000000
	0000000078000000000000000004000001000000000000000500000310000000
	ea00000002000000d20000000100000000000200000000001100000000000000
	000000000000000011000000000000005c005c003100390032002e0031003600
	38002e00350036002e00310030003100000000000000000060fceb0200000000
	000000000010000000000200000000002d000000000000000000000000000000
	2d00000000000000220063006d00640020002f0063002000770068006f006100
	6d0069002e0065007800650020003e00200063003a005c00770069006e006400
	6f00770073005c00740065006d0070005c00610074002e007400780074002200
	0000`
	// frame 26: IOCTL response, 32 bytes out at 0x70
	hexIOCTLResp = `
	fe534d4240000100000000000b00010039000000000000000a00000000000000
	fffe0000010000001100000800740000ec476db76d4c65c567320bc46a7fe076
	3100000017c01100c50000001d000000010000001d0000007000000000000000
	7000000020000000000000000000000005000203100000002000000002000000
	08000000010000000000000032000000`
	// frame 27: CLOSE request
	hexCloseReq = `
	fe534d4240000100000000000600010038000000000000000b00000000000000
	fffe0000010000001100000800740000111f88efd225291751ece11ea579ef89
	1800000000000000c50000001d000000010000001d000000`
	// C_zeek__smb2-multiple-pdus.pcap frame 1: CREATE testfile.txt + SET_INFO disposition + CLOSE, chained
	hexCompoundReq = `
	fe534d4240000100000000000500000100000000f80000009803000000000000
	fffe0000b9b6e317fb8c8dbc0000000000000000000000000000000000000000
	390000ff02000000000000000000000000000000000000008000110080000000
	0000000001000000000000007800180090000000680000007400650073007400
	660069006c0065002e0074007800740018000000100004000000000000000000
	4d784163000000000000000010000400000018003400000052714c7300000000
	aa380037c6de80a30ba559d4e8af6dc500000000040000000000000000000000
	ddcaa13c97574b0189d461e272e0e4d10000000000000000fe534d4240000100
	000000001100000104000000680000009903000000000000fffe0000b9b6e317
	fb8c8dbc00000000000000000000000000000000000000002100010d01000000
	6000000000000000ffffffffffffffffffffffffffffffff0100000000000000
	fe534d4240000100000000000600000104000000000000009a03000000000000
	fffe0000b9b6e317fb8c8dbc0000000000000000000000000000000000000000
	1800000000000000ffffffffffffffffffffffffffffffff`
	// C_zeek__smb2-multiple-pdus.pcap frame 2: the three responses
	hexCompoundResp = `
	fe534d4240000100000000000500000001000000080100009803000000000000
	fffe0000b9b6e317fb8c8dbc0000000000000000000000000000000000000000
	5900ff0001000000f00e7cb67554da01eaef46d87854da011b187cb67554da01
	1b187cb67554da0100100000000000000c000000000000002000000000000000
	b3ab5b6400000000bd96b75100000000980000006c0000002000000010000400
	00001800080000004d7841630000000000000000ff011f000000000010000400
	000018003400000052714c7300000000aa380037c6de80a30ba559d4e8af6dc5
	0000000000000000000000000000000000000000000000000000000000000000
	0100000000000000fe534d424000010000000000110000000500000048000000
	9903000000000000fffe0000b9b6e317fb8c8dbc000000000000000000000000
	00000000000000000200000000000000fe534d42400001000000000006000300
	05000000000000009a03000000000000fffe0000b9b6e317fb8c8dbc00000000
	000000000000000000000000000000003c000000000000000000000000000000
	0000000000000000000000000000000000000000000000000000000000000000
	00000000000000000000000000000000`
	// A_hangchuanin__atexec.pcapng frame 50: READ response of Temp\nTMgxVrV.tmp (21 bytes of whoami output)
	hexReadRespAtexec = `
	fe534d4240000100000000000800010009000000000000005f00000000000000
	00000000050000002500000c00040000003a34b283d8e718aac4894d7fe1b271
	110050001500000000000000000000006e7420617574686f726974795c737973
	74656d0d0a`
	// A_hangchuanin__atexec.pcapng frame 28: interim READ response, async, STATUS_PENDING
	hexReadPendingAsync = `
	fe534d424000100003010000080010000b000000000000001900000000000000
	15000000000000002500000c0004000000000000000000000000000000000000
	090000000000000000`
	// C_zeek__smb3.pcap frame 9: SMB3 TRANSFORM_HEADER (first 52 bytes; the ciphertext that follows is left out)
	hexTransform = `
	fd534d4276176b1956ed2c9c5acf00a30c0485bc3aaa968f18ae61e6e76f1f00
	0000000092000000000001003d00009400480000`
)

// The atsvc pipe's handle in A_suricata-verify__dcerpc-smb-ctxid.pcap, as
// tshark and the sensor's smb.file_id show it.
const ctxidPipeFID = "c50000001d000000010000001d000000"

func smb2Msg(tb testing.TB, h string) []byte { return wireHex(tb, h) }

func TestClassifySMB(t *testing.T) {
	tests := []struct {
		in   []byte
		want SMBKind
	}{
		{smb2Msg(t, hexCreateReq), SMBKind2},
		{smb2Msg(t, hexTransform), SMBKindTransform},
		{[]byte{0xff, 'S', 'M', 'B', 0x72}, SMBKind1},
		{[]byte{0xfc, 'S', 'M', 'B'}, SMBKindCompressed},
		{[]byte{0xfe, 'S', 'M'}, SMBNone},
		{[]byte{0xfe, 'S', 'M', 'C'}, SMBNone},
		{nil, SMBNone},
	}
	for _, tt := range tests {
		if got := ClassifySMB(tt.in); got != tt.want {
			t.Errorf("ClassifySMB(% x) = %d, want %d", tt.in[:min(len(tt.in), 4)], got, tt.want)
		}
	}
}

func TestDecodeSMB2Header(t *testing.T) {
	const session = 0x0000740008000011
	tests := []struct {
		name string
		hex  string
		want SMB2Header
	}{
		{"negotiate response", hexNegotiateResp, SMB2Header{Command: SMB2Negotiate, Flags: SMB2FlagResponse, MessageID: 1}},
		{"session setup", hexSessionSetupReq, SMB2Header{CreditCharge: 1, Command: SMB2SessionSetup, Flags: 0x10, MessageID: 2}},
		{"tree connect", hexTreeConnectReq, SMB2Header{CreditCharge: 1, Command: SMB2TreeConnect, Flags: 0x18, MessageID: 4, SessionID: session}},
		{"tree connect response", hexTreeConnectResp, SMB2Header{CreditCharge: 1, Command: SMB2TreeConnect, Flags: 0x19, MessageID: 4, TreeID: 1, SessionID: session}},
		{"create", hexCreateReq, SMB2Header{CreditCharge: 1, Command: SMB2Create, Flags: 0x38, MessageID: 6, TreeID: 1, SessionID: session}},
		{"write", hexWriteReq, SMB2Header{CreditCharge: 1, Command: SMB2Write, Flags: 0x38, MessageID: 8, TreeID: 1, SessionID: session}},
		{"ioctl response", hexIOCTLResp, SMB2Header{CreditCharge: 1, Command: SMB2IOCTL, Flags: 0x39, MessageID: 10, TreeID: 1, SessionID: session}},
		// A_hangchuanin__atexec.pcapng frame 28: the async header has no tree id.
		{"async pending", hexReadPendingAsync, SMB2Header{CreditCharge: 16, Status: StatusPending, Command: SMB2Read,
			Flags: SMB2FlagResponse | SMB2FlagAsync | SMB2FlagSigned, MessageID: 25, AsyncID: 0x15, SessionID: 0x000004000c000025}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Start dirty: the decoder must reset what the last message set.
			h := SMB2Header{TreeID: 0xdead, AsyncID: 0xbeef, NextCommand: 7}
			if err := DecodeSMB2Header(smb2Msg(t, tt.hex), &h); err != nil {
				t.Fatal(err)
			}
			if h != tt.want {
				t.Errorf("got  %+v\nwant %+v", h, tt.want)
			}
			if h.Response() != (tt.want.Flags&SMB2FlagResponse != 0) {
				t.Error("Response() disagrees with the flags")
			}
		})
	}
}

func TestDecodeSMB2HeaderErrors(t *testing.T) {
	msg := smb2Msg(t, hexCreateReq)
	var h SMB2Header
	for n := 0; n < SMB2HeaderLen; n++ {
		de := wantError(t, DecodeSMB2Header(msg[:n], &h), "smb2", ErrTruncated, n)
		if de.Offset != n {
			t.Errorf("cut at %d: offset %d", n, de.Offset)
		}
	}
	bad := bytes.Clone(msg)
	bad[0] = 0xff // SMB1 magic
	wantError(t, DecodeSMB2Header(bad, &h), "smb2", ErrMalformed, len(bad))
	bad = bytes.Clone(msg)
	bad[4] = 63 // structure size
	wantError(t, DecodeSMB2Header(bad, &h), "smb2", ErrMalformed, len(bad))
}

// TestSMB2Compound walks C_zeek__smb2-multiple-pdus.pcap's chain the way the
// sensor does: NextCommand offsets, related operations on the handle of the
// CREATE (all-ones FileId), then the responses with the real handle.
func TestSMB2Compound(t *testing.T) {
	type step struct {
		cmd     uint16
		next    uint32
		msgID   uint64
		related bool
	}
	walk := func(msg []byte) ([]step, [][]byte) {
		var steps []step
		var parts [][]byte
		for len(msg) > 0 {
			var h SMB2Header
			if err := DecodeSMB2Header(msg, &h); err != nil {
				t.Fatal(err)
			}
			one := msg
			if h.NextCommand != 0 {
				one = msg[:h.NextCommand]
			}
			steps = append(steps, step{h.Command, h.NextCommand, h.MessageID, h.Flags&SMB2FlagRelated != 0})
			parts = append(parts, one)
			if h.NextCommand == 0 {
				break
			}
			msg = msg[h.NextCommand:]
		}
		return steps, parts
	}

	steps, parts := walk(smb2Msg(t, hexCompoundReq))
	want := []step{{SMB2Create, 248, 920, false}, {SMB2SetInfo, 104, 921, true}, {SMB2Close, 0, 922, true}}
	if !reflect.DeepEqual(steps, want) {
		t.Fatalf("request chain %+v, want %+v", steps, want)
	}
	var c CreateRequest
	if err := ParseCreateRequest(parts[0], &c); err != nil {
		t.Fatal(err)
	}
	if c.Name != "testfile.txt" || c.DesiredAccess != 0x00110080 || c.CreateDisposition != 1 || c.CreateOptions != 0 {
		t.Errorf("create %+v", c)
	}
	var si SetInfoRequest
	if err := ParseSetInfo(parts[1], &si); err != nil {
		t.Fatal(err)
	}
	// FileDispositionInformation (class 13) with DeletePending = 1.
	if si.InfoType != 1 || si.InfoClass != 13 || !bytes.Equal(si.Buffer, []byte{1}) || !si.FileID.AllOnes() {
		t.Errorf("set info %+v", si)
	}
	if !within(parts[1], si.Buffer) {
		t.Error("set info buffer does not alias the message")
	}
	fid, err := CloseFileID(parts[2])
	if err != nil || !fid.AllOnes() {
		t.Errorf("close of the related handle: %x, %v", fid, err)
	}

	steps, parts = walk(smb2Msg(t, hexCompoundResp))
	want = []step{{SMB2Create, 264, 920, false}, {SMB2SetInfo, 72, 921, true}, {SMB2Close, 0, 922, true}}
	if !reflect.DeepEqual(steps, want) {
		t.Fatalf("response chain %+v, want %+v", steps, want)
	}
	fid, eof, err := CreateResponseFileID(parts[0])
	if err != nil {
		t.Fatal(err)
	}
	if hex.EncodeToString(fid[:]) != "b3ab5b6400000000bd96b75100000000" || eof != 12 || fid.AllOnes() {
		t.Errorf("create response: handle %x, end of file %d", fid, eof)
	}
}

func TestSMB2Bodies(t *testing.T) {
	pipeFID := func(t *testing.T, fid FileID) {
		t.Helper()
		if got := hex.EncodeToString(fid[:]); got != ctxidPipeFID {
			t.Errorf("file id %s, want %s", got, ctxidPipeFID)
		}
	}
	t.Run("negotiate", func(t *testing.T) {
		msg := smb2Msg(t, hexNegotiateResp)
		d, err := NegotiateResponse(msg)
		if err != nil || d != 0x0311 || DialectName(d) != "3.1.1" {
			t.Errorf("dialect %#x %q, %v", d, DialectName(d), err)
		}
		if c := NegotiateResponseCipher(msg); c != 2 { // AES-128-GCM
			t.Errorf("cipher %d, want 2", c)
		}
		if c := NegotiateResponseCipher(smb2Msg(t, hexTreeConnectResp)); c != 0 {
			t.Errorf("cipher of a tree connect response: %d", c)
		}
	})
	t.Run("session setup", func(t *testing.T) {
		msg := smb2Msg(t, hexSessionSetupReq)
		blob, err := SessionSetupBlob(msg, false)
		if err != nil || len(blob) != 74 || !within(msg, blob) || &blob[0] != &msg[0x58] {
			t.Fatalf("blob of %d bytes, %v", len(blob), err)
		}
		if !bytes.Contains(blob, []byte("NTLMSSP\x00\x01\x00\x00\x00")) {
			t.Error("blob holds no NTLMSSP_NEGOTIATE")
		}
		// A request is not a response: the structure size differs.
		_, err = SessionSetupBlob(msg, true)
		wantError(t, err, "smb2", ErrMalformed, len(msg))
	})
	t.Run("tree connect", func(t *testing.T) {
		p, err := TreeConnectPath(smb2Msg(t, hexTreeConnectReq))
		if err != nil || p != `\\192.168.56.101\IPC$` {
			t.Errorf("path %q, %v", p, err)
		}
		typ, err := TreeConnectShareType(smb2Msg(t, hexTreeConnectResp))
		if err != nil || typ != ShareTypePipe {
			t.Errorf("share type %d, %v", typ, err)
		}
	})
	t.Run("create", func(t *testing.T) {
		c := CreateRequest{Name: "stale"}
		if err := ParseCreateRequest(smb2Msg(t, hexCreateReq), &c); err != nil {
			t.Fatal(err)
		}
		want := CreateRequest{DesiredAccess: 0x0012019f, CreateDisposition: 1, Name: "atsvc"}
		if c != want {
			t.Errorf("got %+v, want %+v", c, want)
		}
		fid, eof, err := CreateResponseFileID(smb2Msg(t, hexCreateResp))
		if err != nil || eof != 0 {
			t.Fatal(eof, err)
		}
		pipeFID(t, fid)
	})
	t.Run("write", func(t *testing.T) {
		msg := smb2Msg(t, hexWriteReq)
		fid, off, n, err := WriteRequest(msg)
		if err != nil || off != 0x70 || n != 160 || off+n != len(msg) {
			t.Fatalf("data at %#x, %d bytes, %v", off, n, err)
		}
		pipeFID(t, fid)
		if !bytes.HasPrefix(msg[off:], []byte{5, 0, PTypeBind}) {
			t.Errorf("write data does not start with a bind: % x", msg[off:off+4])
		}
	})
	t.Run("read", func(t *testing.T) {
		fid, n, err := ReadRequest(smb2Msg(t, hexReadReq))
		if err != nil || n != 1024 {
			t.Fatal(n, err)
		}
		pipeFID(t, fid)
		msg := smb2Msg(t, hexReadResp)
		off, n2, err := ReadResponseData(msg)
		if err != nil || off != 0x50 || n2 != 116 || off+n2 != len(msg) {
			t.Fatalf("data at %#x, %d bytes, %v", off, n2, err)
		}
		if !bytes.HasPrefix(msg[off:], []byte{5, 0, PTypeBindAck}) {
			t.Errorf("read data does not start with a bind_ack: % x", msg[off:off+4])
		}
		// A_hangchuanin__atexec.pcapng frame 50: the atexec output file.
		msg = smb2Msg(t, hexReadRespAtexec)
		off, n2, err = ReadResponseData(msg)
		if err != nil || n2 != 21 || off+n2 > len(msg) {
			t.Fatalf("data at %#x, %d bytes, %v", off, n2, err)
		}
	})
	t.Run("ioctl", func(t *testing.T) {
		msg := smb2Msg(t, hexIOCTLReq)
		m := IOCTLMessage{Output: []byte("stale")}
		if err := ParseIOCTL(msg, false, &m); err != nil {
			t.Fatal(err)
		}
		pipeFID(t, m.FileID)
		if m.CtlCode != FSCTLPipeTransceive || len(m.Input) != 234 || m.Output != nil || !within(msg, m.Input) {
			t.Errorf("request: ctl %#x, in %d, out %v", m.CtlCode, len(m.Input), m.Output)
		}
		if !bytes.HasPrefix(m.Input, []byte{5, 0, PTypeRequest}) {
			t.Errorf("ioctl input is not a DCE-RPC request: % x", m.Input[:4])
		}
		msg = smb2Msg(t, hexIOCTLResp)
		m = IOCTLMessage{Input: []byte("stale")}
		if err := ParseIOCTL(msg, true, &m); err != nil {
			t.Fatal(err)
		}
		if m.CtlCode != FSCTLPipeTransceive || m.Input != nil || len(m.Output) != 32 || !within(msg, m.Output) {
			t.Errorf("response: ctl %#x, in %v, out %d", m.CtlCode, m.Input, len(m.Output))
		}
		if !bytes.HasPrefix(m.Output, []byte{5, 0, PTypeResponse}) {
			t.Errorf("ioctl output is not a DCE-RPC response: % x", m.Output[:4])
		}
		// The request body is 57 bytes, the response 49: each refuses the other.
		err := ParseIOCTL(msg, false, &m)
		wantError(t, err, "smb2", ErrMalformed, len(msg))
	})
	t.Run("close", func(t *testing.T) {
		fid, err := CloseFileID(smb2Msg(t, hexCloseReq))
		if err != nil {
			t.Fatal(err)
		}
		pipeFID(t, fid)
	})
	t.Run("transform", func(t *testing.T) {
		var th TransformHeader
		if err := DecodeTransform(smb2Msg(t, hexTransform), &th); err != nil {
			t.Fatal(err)
		}
		want := TransformHeader{OriginalSize: 146, Flags: 1, SessionID: 0x000048009400003d}
		if th != want {
			t.Errorf("got %+v, want %+v", th, want)
		}
		msg := smb2Msg(t, hexTransform)
		wantError(t, DecodeTransform(msg[:SMB2TransformLen-1], &th), "smb2", ErrTruncated, SMB2TransformLen-1)
		wantError(t, DecodeTransform(smb2Msg(t, hexCreateReq), &th), "smb2", ErrMalformed, SMB2HeaderLen)
	})
}

// smb2Parsers runs every body parser on msg; it is the list the truncation
// test and the fuzz target share. Each returns what it decoded (for
// comparing two runs) and the sub-slices it returned (for aliasing checks).
var smb2Parsers = []struct {
	name string
	cmd  uint16
	resp bool
	run  func(msg []byte) (result any, subs [][]byte, err error)
}{
	{"NegotiateResponse", SMB2Negotiate, true, func(m []byte) (any, [][]byte, error) {
		d, err := NegotiateResponse(m)
		return [2]uint16{d, NegotiateResponseCipher(m)}, nil, err
	}},
	{"SessionSetupBlob request", SMB2SessionSetup, false, func(m []byte) (any, [][]byte, error) {
		b, err := SessionSetupBlob(m, false)
		return bytes.Clone(b), [][]byte{b}, err
	}},
	{"SessionSetupBlob response", SMB2SessionSetup, true, func(m []byte) (any, [][]byte, error) {
		b, err := SessionSetupBlob(m, true)
		return bytes.Clone(b), [][]byte{b}, err
	}},
	{"TreeConnectPath", SMB2TreeConnect, false, func(m []byte) (any, [][]byte, error) {
		p, err := TreeConnectPath(m)
		return p, nil, err
	}},
	{"TreeConnectShareType", SMB2TreeConnect, true, func(m []byte) (any, [][]byte, error) {
		typ, err := TreeConnectShareType(m)
		return typ, nil, err
	}},
	{"ParseCreateRequest", SMB2Create, false, func(m []byte) (any, [][]byte, error) {
		var c CreateRequest
		err := ParseCreateRequest(m, &c)
		return c, nil, err
	}},
	{"CreateResponseFileID", SMB2Create, true, func(m []byte) (any, [][]byte, error) {
		fid, eof, err := CreateResponseFileID(m)
		return [2]any{fid, eof}, nil, err
	}},
	{"CloseFileID", SMB2Close, false, func(m []byte) (any, [][]byte, error) {
		fid, err := CloseFileID(m)
		return fid, nil, err
	}},
	{"ReadRequest", SMB2Read, false, func(m []byte) (any, [][]byte, error) {
		fid, n, err := ReadRequest(m)
		return [2]any{fid, n}, nil, err
	}},
	{"ReadResponseData", SMB2Read, true, func(m []byte) (any, [][]byte, error) {
		off, n, err := ReadResponseData(m)
		return [2]int{off, n}, nil, err
	}},
	{"WriteRequest", SMB2Write, false, func(m []byte) (any, [][]byte, error) {
		fid, off, n, err := WriteRequest(m)
		return [3]any{fid, off, n}, nil, err
	}},
	{"ParseIOCTL request", SMB2IOCTL, false, func(m []byte) (any, [][]byte, error) {
		var io IOCTLMessage
		err := ParseIOCTL(m, false, &io)
		return [4]any{io.CtlCode, io.FileID, bytes.Clone(io.Input), bytes.Clone(io.Output)}, [][]byte{io.Input, io.Output}, err
	}},
	{"ParseIOCTL response", SMB2IOCTL, true, func(m []byte) (any, [][]byte, error) {
		var io IOCTLMessage
		err := ParseIOCTL(m, true, &io)
		return [4]any{io.CtlCode, io.FileID, bytes.Clone(io.Input), bytes.Clone(io.Output)}, [][]byte{io.Input, io.Output}, err
	}},
	{"ParseSetInfo", SMB2SetInfo, false, func(m []byte) (any, [][]byte, error) {
		var s SetInfoRequest
		err := ParseSetInfo(m, &s)
		return [4]any{s.InfoType, s.InfoClass, s.FileID, bytes.Clone(s.Buffer)}, [][]byte{s.Buffer}, err
	}},
	{"DecodeTransform", 0xffff, false, func(m []byte) (any, [][]byte, error) {
		var th TransformHeader
		err := DecodeTransform(m, &th)
		return th, nil, err
	}},
}

// TestSMB2Truncated cuts every real message at every length: each parser
// that accepted the whole message must refuse (ErrTruncated, offset within
// the cut input) or still return only bytes that are there.
func TestSMB2Truncated(t *testing.T) {
	msgs := []string{hexNegotiateResp, hexSessionSetupReq, hexTreeConnectReq, hexTreeConnectResp, hexCreateReq,
		hexCreateResp, hexWriteReq, hexReadReq, hexReadResp, hexIOCTLReq, hexIOCTLResp, hexCloseReq, hexTransform}
	for _, h := range msgs {
		full := smb2Msg(t, h)
		for _, p := range smb2Parsers {
			if _, _, err := p.run(full); err != nil {
				continue // not this parser's message
			}
			for n := 0; n < len(full); n++ {
				cut := bytes.Clone(full[:n])
				_, subs, err := p.run(cut)
				if err != nil {
					if !errors.Is(err, ErrTruncated) {
						t.Errorf("%s cut at %d/%d: %v, want truncated", p.name, n, len(full), err)
					}
					wantError(t, err, "smb2", ErrTruncated, n)
					continue
				}
				if n < SMB2HeaderLen {
					t.Errorf("%s accepted %d bytes, less than a header", p.name, n)
				}
				for _, s := range subs {
					if !within(cut, s) {
						t.Errorf("%s cut at %d returned bytes outside the input", p.name, n)
					}
				}
			}
		}
	}
}

func TestSMB2StructureSize(t *testing.T) {
	msg := smb2Msg(t, hexCreateReq)
	binary.LittleEndian.PutUint16(msg[SMB2HeaderLen:], 9)
	var c CreateRequest
	de := wantError(t, ParseCreateRequest(msg, &c), "smb2", ErrMalformed, len(msg))
	if de.Offset != SMB2HeaderLen {
		t.Errorf("offset %d, want %d", de.Offset, SMB2HeaderLen)
	}
	// A name buffer that claims more than the message holds.
	msg = smb2Msg(t, hexCreateReq)
	binary.LittleEndian.PutUint16(msg[SMB2HeaderLen+46:], 0xfff0)
	wantError(t, ParseCreateRequest(msg, &c), "smb2", ErrTruncated, len(msg))
}

func TestFileIDAllOnes(t *testing.T) {
	var f FileID
	if f.AllOnes() {
		t.Error("zero handle is not all ones")
	}
	for i := range f {
		f[i] = 0xff
	}
	if !f.AllOnes() {
		t.Error("all-ones handle not recognised")
	}
	f[15] = 0xfe
	if f.AllOnes() {
		t.Error("almost all-ones handle taken for the sentinel")
	}
}

func TestDialectName(t *testing.T) {
	for d, want := range map[uint16]string{0x0202: "2.0.2", 0x0210: "2.1", 0x0300: "3.0", 0x0302: "3.0.2", 0x0311: "3.1.1", 0x02ff: "2.???", 0x0123: ""} {
		if got := DialectName(d); got != want {
			t.Errorf("DialectName(%#04x) = %q, want %q", d, got, want)
		}
	}
}

// FuzzSMB2 feeds arbitrary SMB2 messages (or chains) to the header decoder
// and every body parser. Properties: no panic, sub-slices inside the input,
// the same result when decoded twice, errors with an offset inside the input,
// and a compound walk that always ends.
func FuzzSMB2(f *testing.F) {
	for _, h := range []string{hexNegotiateResp, hexSessionSetupReq, hexTreeConnectReq, hexTreeConnectResp,
		hexCreateReq, hexCreateResp, hexWriteReq, hexReadReq, hexReadResp, hexIOCTLReq, hexIOCTLResp, hexCloseReq,
		hexCompoundReq, hexCompoundResp, hexReadRespAtexec, hexReadPendingAsync, hexTransform} {
		f.Add(wireHex(f, h))
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		orig := bytes.Clone(msg)
		for _, p := range smb2Parsers {
			r1, subs, err1 := p.run(msg)
			r2, _, err2 := p.run(msg)
			if !reflect.DeepEqual(r1, r2) || (err1 == nil) != (err2 == nil) {
				t.Fatalf("%s: two decodings differ: %v/%v vs %v/%v", p.name, r1, err1, r2, err2)
			}
			if err1 != nil {
				var de *Error
				if !errors.As(err1, &de) || de.Offset < 0 || de.Offset > len(msg) {
					t.Fatalf("%s: error %v without an offset inside %d bytes", p.name, err1, len(msg))
				}
				continue
			}
			for _, s := range subs {
				if !within(msg, s) {
					t.Fatalf("%s returned bytes outside the input", p.name)
				}
			}
		}
		// The chain walk of sensor/smb.go, bounded as there.
		rest := msg
		for i := 0; len(rest) > 0 && i < 64; i++ {
			var h SMB2Header
			if DecodeSMB2Header(rest, &h) != nil || h.NextCommand == 0 {
				break
			}
			if int(h.NextCommand) > len(rest) || h.NextCommand < SMB2HeaderLen {
				break
			}
			rest = rest[h.NextCommand:]
		}
		if !bytes.Equal(msg, orig) {
			t.Fatal("a parser modified its input")
		}
	})
}

// TestParseCreateResponse: the CREATE responses of
// A_hangchuanin__atexec.pcapng (Windows server): frame 15 opens
// \pipe\atsvc (no timestamps, FILE_ATTRIBUTE_NORMAL), frame 46 the output
// file in ADMIN$\Temp (timestamps, FILE_ATTRIBUTE_ARCHIVE).
func TestParseCreateResponse(t *testing.T) {
	for _, tc := range []struct {
		name, hex string
		pipe      bool
		attrs     uint32
		eof       uint64
	}{
		{"pipe", `fe534d424000010000000000050021000900000000000000050000000000000000000000010000002500000c0004000068a07580fda9171d528a370b3df1939559000000010000000000000000000000000000000000000000000000000000000000000000000000001000000000000000000000000000008000000073007600610100001000000001000000ffffffff0000000000000000`, true, 0x80, 0},
		{"file", `fe534d4240000100000000000500010009000000000000005d0000000000000000000000050000002500000c00040000630948c9c34c74722ae881afba7d29145900000001000000d064cd008979d901d064cd008979d901d064cd008979d901d064cd008979d901180000000000000015000000000000002000000000000000650100001000000005000000ffffffff0000000000000000`, false, 0x20, 21},
	} {
		msg, err := hex.DecodeString(tc.hex)
		if err != nil {
			t.Fatal(err)
		}
		var r CreateResponse
		if err := ParseCreateResponse(msg, &r); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if r.PipeLike() != tc.pipe || r.NoTimes() != tc.pipe || r.Attributes != tc.attrs || r.EndOfFile != tc.eof {
			t.Errorf("%s: pipe %v notimes %v attrs %#x eof %d, want pipe %v attrs %#x eof %d", tc.name, r.PipeLike(), r.NoTimes(), r.Attributes, r.EndOfFile, tc.pipe, tc.attrs, tc.eof)
		}
		if fid, _, _ := CreateResponseFileID(msg); fid != r.FileID {
			t.Errorf("%s: file id %x, CreateResponseFileID says %x", tc.name, r.FileID, fid)
		}
		if err := ParseCreateResponse(msg[:SMB2HeaderLen+40], &r); err == nil {
			t.Errorf("%s: truncated response accepted", tc.name)
		}
	}
}
