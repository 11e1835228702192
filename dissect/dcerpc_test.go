package dissect

import (
	"bytes"
	"encoding/binary"
	"errors"
	"reflect"
	"testing"
)

// DCE-RPC PDUs from the shared captures: the SMB2 WRITE, READ or IOCTL data
// carrying them, or the TCP payload for ncacn_ip_tcp.
const (
	// A_suricata-verify__dcerpc-smb-ctxid.pcap frame 21 (SMB2 WRITE data): bind, call 2, ATSVC on ctx 0 NDR, ctx 1 NDR64, ctx 2 bind time feature negotiation
	hexBindBTFN = `
	05000b0310000000a000000002000000b810b810000000000300000000000100
	8206f71f510ae830076d740be8cee98b01000000045d888aeb1cc9119fe80800
	2b10486002000000010001008206f71f510ae830076d740be8cee98b01000000
	33057171babe37498319b5dbef9ccc3601000000020001008206f71f510ae830
	076d740be8cee98b010000002c1cb76c12984045030000000000000001000000`
	// frame 24 (SMB2 READ data): bind_ack, sec_addr \PIPE\atsvc, results provider rejection / NDR64 accepted / negotiate_ack
	hexBindAckBTFN = `
	05000c03100000007400000002000000b810b8104b1400000c005c504950455c
	6174737663002d00030000000200020000000000000000000000000000000000
	000000000000000033057171babe37498319b5dbef9ccc360100000003000300
	0000000000000000000000000000000000000000`
	// frame 25 (SMB2 IOCTL input): NetrJobAdd request, ctx 1, no auth
	hexRequestNDR64 = `
	0500000310000000ea00000002000000d2000000010000000000020000000000
	1100000000000000000000000000000011000000000000005c005c0031003900
	32002e003100360038002e00350036002e003100300031000000000000000000
	60fceb0200000000000000000010000000000200000000002d00000000000000
	00000000000000002d00000000000000220063006d00640020002f0063002000
	770068006f0061006d0069002e0065007800650020003e00200063003a005c00
	770069006e0064006f00770073005c00740065006d0070005c00610074002e00
	74007800740022000000`
	// frame 26 (SMB2 IOCTL output): NetrJobAdd response, ERROR_NOT_SUPPORTED
	hexResponseNDR64 = `
	0500020310000000200000000200000008000000010000000000000032000000`
	// B_scapy__dcerpc_privacy_ntlm.pcapng frame 14 (TCP payload): request opnum 64, NTLMSSP privacy, auth_len 16, auth pad 4
	hexRequestAuth = `
	050000031000000070001000020000003c00000000004000c2f49c21d4bea977
	48a269ff0b0f39595050d459aacc4f54f7f1f888992af5f3564bf435bc51d920
	2db30837d013b6385ab22b3683ba6d47013b69fa690aedaa0a06040000000000
	01000000c92617d0bd7e730f00000000`
	// atexec-sealed-dev.pcap frame 34 (SMB2 READ data): SchRpcRun response, NTLMSSP privacy, auth pad 12
	hexResponseSealed = `
	05000203100000005000100003000000140000000000000053bc849c9c7aee80
	bcd8a4e343f530ecb37e5a2bcceaa7eba277e06e1fa7fe6c0a060c007f350100
	01000000cc0f68624a0f8a4501000000`
	// B_scapy__dcerpc_privacy_ntlm.pcapng frame 16 (TCP payload): fault nca_s_op_rng_error 0x1c010002, call 2
	hexFault = `
	0500032310000000780000000200000078000000000000010200011c00000000
	01100800cccccccc480000000000000000000200000000000000000001000100
	0400000004000200ac02000000000000a0ac1283a475da0102000000d1060000
	b70000000000000004000000440043003100000000000000`
	// A_hangchuanin__atexec.pcapng frame 31 (SMB2 WRITE data): SchRpcRun request, call 3, opnum 12, 56-byte stub, auth level connect (no verifier)
	hexRequestConnect = `
	050000031000000050000000030000003800000000000c000a00000000000000
	0a0000005c006e0054004d0067007800560072005600000000000000a6470000
	00000000000000000000000000000000`
)

func rpcPDU(tb testing.TB, h string) ([]byte, DCERPCHeader) {
	tb.Helper()
	b := wireHex(tb, h)
	var hdr DCERPCHeader
	if ok, need := PeekDCERPC(b, &hdr); !ok || need != 0 || int(hdr.FragLen) != len(b) {
		tb.Fatalf("not one PDU: ok %v need %d frag_length %d of %d bytes", ok, need, hdr.FragLen, len(b))
	}
	return b, hdr
}

func TestPeekDCERPC(t *testing.T) {
	tests := []struct {
		name string
		hex  string
		want DCERPCHeader
	}{
		{"bind", hexBindBTFN, DCERPCHeader{Major: 5, PType: PTypeBind, Flags: 3, DRep: [4]byte{0x10}, FragLen: 160, CallID: 2}},
		{"bind_ack", hexBindAckBTFN, DCERPCHeader{Major: 5, PType: PTypeBindAck, Flags: 3, DRep: [4]byte{0x10}, FragLen: 116, CallID: 2}},
		{"request with verifier", hexRequestAuth, DCERPCHeader{Major: 5, PType: PTypeRequest, Flags: 3, DRep: [4]byte{0x10}, FragLen: 112, AuthLen: 16, CallID: 2}},
		{"sealed response", hexResponseSealed, DCERPCHeader{Major: 5, PType: PTypeResponse, Flags: 3, DRep: [4]byte{0x10}, FragLen: 80, AuthLen: 16, CallID: 3}},
		{"fault", hexFault, DCERPCHeader{Major: 5, PType: PTypeFault, Flags: 0x23, DRep: [4]byte{0x10}, FragLen: 120, CallID: 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, h := rpcPDU(t, tt.hex)
			if h != tt.want {
				t.Errorf("got  %+v\nwant %+v", h, tt.want)
			}
			if h.Order() != binary.LittleEndian {
				t.Error("drep 0x10 is little-endian")
			}
		})
	}

	full := wireHex(t, hexBindBTFN)
	var h DCERPCHeader
	for n := 0; n < DCERPCHeaderLen; n++ {
		if ok, need := PeekDCERPC(full[:n], &h); ok || need != DCERPCHeaderLen-n {
			t.Errorf("%d bytes of a header: ok %v need %d, want need %d", n, ok, need, DCERPCHeaderLen-n)
		}
	}
	reject := func(name string, edit func(b []byte)) {
		b := bytes.Clone(full)
		edit(b)
		if ok, need := PeekDCERPC(b, &h); ok || need != 0 {
			t.Errorf("%s: ok %v need %d, want rejected", name, ok, need)
		}
		// Short input that already shows the mistake is rejected too.
		if ok, need := PeekDCERPC(b[:3], &h); ok || need != 0 && b[0] != 5 {
			t.Errorf("%s (3 bytes): ok %v need %d", name, ok, need)
		}
	}
	reject("version 4 (connectionless)", func(b []byte) { b[0] = 4 })
	reject("minor 2", func(b []byte) { b[1] = 2 })
	reject("ptype 20", func(b []byte) { b[2] = 20 })
	reject("EBCDIC drep", func(b []byte) { b[4] = 0x11 })
	reject("frag_length below a header", func(b []byte) { b[8], b[9] = 15, 0 })
	reject("auth_length beyond the fragment", func(b []byte) { b[10] = 140 })
}

// TestDCERPCBigEndian rewrites the fault of B_scapy__dcerpc_privacy_ntlm.pcapng
// frame 16 in big-endian data representation: every integer and the first
// three UUID fields follow the drep.
func TestDCERPCBigEndian(t *testing.T) {
	le := wireHex(t, hexFault)
	be := bytes.Clone(le)
	be[4] = 0x00
	for _, f := range []struct{ off, size int }{{8, 2}, {10, 2}, {12, 4}, {16, 4}, {20, 2}, {24, 4}} {
		for i := 0; i < f.size; i++ {
			be[f.off+i] = le[f.off+f.size-1-i]
		}
	}
	var h DCERPCHeader
	if ok, _ := PeekDCERPC(be, &h); !ok || h.Order() != binary.BigEndian || h.FragLen != 120 || h.CallID != 2 {
		t.Fatalf("big-endian header: ok %v %+v", ok, h)
	}
	var r ResponsePDU
	if err := ParseResponse(be, &h, &AuthTrailer{}, false, &r); err != nil || r.Status != 0x1c010002 || r.AllocHint != 120 {
		t.Errorf("big-endian fault: %+v, %v", r, err)
	}
	u := []byte{0x1f, 0xf7, 0x06, 0x82, 0x0a, 0x51, 0x30, 0xe8, 0x07, 0x6d, 0x74, 0x0b, 0xe8, 0xce, 0xe9, 0x8b}
	if got := FormatUUID(u, binary.BigEndian); got != "1ff70682-0a51-30e8-076d-740be8cee98b" {
		t.Errorf("big-endian UUID %s", got)
	}
	if got := FormatUUID(u[:15], binary.BigEndian); got != "" {
		t.Errorf("short UUID gave %q", got)
	}
}

func TestParseBind(t *testing.T) {
	pdu, h := rpcPDU(t, hexBindBTFN)
	ctxs, err := ParseBind(pdu, &h, nil)
	if err != nil {
		t.Fatal(err)
	}
	const atsvc = "1ff70682-0a51-30e8-076d-740be8cee98b"
	want := []ContextElem{
		{ID: 0, AbstractUUID: atsvc, AbstractMajor: 1, Syntaxes: []string{"8a885d04-1ceb-11c9-9fe8-08002b104860"}},
		{ID: 1, AbstractUUID: atsvc, AbstractMajor: 1, Syntaxes: []string{"71710533-beba-4937-8319-b5dbef9ccc36"}},
		{ID: 2, AbstractUUID: atsvc, AbstractMajor: 1, Syntaxes: []string{"6cb71c2c-9812-4540-0300-000000000000"}},
	}
	if !reflect.DeepEqual(ctxs, want) {
		t.Fatalf("got  %+v\nwant %+v", ctxs, want)
	}
	if SyntaxByUUID(ctxs[0].Syntaxes[0]) != SyntaxNDR || SyntaxByUUID(ctxs[1].Syntaxes[0]) != SyntaxNDR64 ||
		SyntaxByUUID(ctxs[2].Syntaxes[0]) != SyntaxUnknown {
		t.Error("transfer syntaxes misnamed")
	}
	if IsBindTimeFeature(ctxs[1].Syntaxes[0]) || !IsBindTimeFeature(ctxs[2].Syntaxes[0]) {
		t.Error("bind time feature negotiation marker not told apart from NDR64")
	}
	if SyntaxNDR.String() != "NDR" || SyntaxNDR64.String() != "NDR64" || SyntaxUnknown.String() != "" {
		t.Error("syntax names")
	}

	// ParseBind appends: a caller may reuse its slice.
	again, err := ParseBind(pdu, &h, ctxs[:1])
	if err != nil || len(again) != 4 {
		t.Errorf("appending to one element: %d elements, %v", len(again), err)
	}

	for n := 0; n < len(pdu); n++ {
		got, err := ParseBind(pdu[:n], &h, nil)
		if err == nil {
			t.Fatalf("cut at %d: %d contexts, no error", n, len(got))
		}
		wantError(t, err, "dcerpc", ErrTruncated, n)
	}
	bad := bytes.Clone(pdu)
	bad[24] = maxContextsPerBind + 1
	_, err = ParseBind(bad, &h, nil)
	if de := wantError(t, err, "dcerpc", ErrLimit, len(bad)); de.Offset != 24 {
		t.Errorf("limit reported at %d, want 24", de.Offset)
	}
}

func TestParseBindAck(t *testing.T) {
	pdu, h := rpcPDU(t, hexBindAckBTFN)
	res, err := ParseBindAck(pdu, &h, nil)
	if err != nil {
		t.Fatal(err)
	}
	// at.exe offered NDR, NDR64 and bind time feature negotiation; Windows
	// refused NDR (provider rejection, reason 2: transfer syntaxes not
	// supported), took NDR64 and answered the feature negotiation with
	// negotiate_ack and bitmask 0x0003 in the reason field.
	want := []ContextResult{
		{Result: 2, Reason: 2, Syntax: "00000000-0000-0000-0000-000000000000"},
		{Result: 0, Reason: 0, Syntax: "71710533-beba-4937-8319-b5dbef9ccc36"},
		{Result: 3, Reason: 3, Syntax: "00000000-0000-0000-0000-000000000000"},
	}
	if !reflect.DeepEqual(res, want) {
		t.Fatalf("got  %+v\nwant %+v", res, want)
	}
	for n := 0; n < len(pdu); n++ {
		if _, err := ParseBindAck(pdu[:n], &h, nil); err == nil {
			t.Fatalf("cut at %d: no error", n)
		} else {
			wantError(t, err, "dcerpc", ErrTruncated, n)
		}
	}
	// A secondary address longer than the PDU.
	bad := bytes.Clone(pdu)
	binary.LittleEndian.PutUint16(bad[24:], 0xfff0)
	_, err = ParseBindAck(bad, &h, nil)
	wantError(t, err, "dcerpc", ErrTruncated, len(bad))
}

func TestParseRequest(t *testing.T) {
	t.Run("NDR64 no auth", func(t *testing.T) {
		pdu, h := rpcPDU(t, hexRequestNDR64)
		var tr AuthTrailer
		if ok, err := ParseAuthTrailer(pdu, &h, &tr); ok || err != nil || tr.Value != nil {
			t.Fatalf("trailer on a PDU without auth: %v %v %+v", ok, err, tr)
		}
		var r RequestPDU
		if err := ParseRequest(pdu, &h, &tr, false, &r); err != nil {
			t.Fatal(err)
		}
		if r.ContextID != 1 || r.Opnum != 0 || r.StubOff != 24 || len(r.Stub) != 210 || int(r.AllocHint) != len(r.Stub) {
			t.Errorf("request %+v (stub %d)", r, len(r.Stub))
		}
		if &r.Stub[0] != &pdu[24] || &r.Stub[len(r.Stub)-1] != &pdu[len(pdu)-1] {
			t.Error("stub does not alias the PDU")
		}
	})
	t.Run("connect level", func(t *testing.T) {
		// Level connect authenticates the bind only: the request carries no verifier.
		pdu, h := rpcPDU(t, hexRequestConnect)
		var tr AuthTrailer
		var r RequestPDU
		if _, err := ParseAuthTrailer(pdu, &h, &tr); err != nil {
			t.Fatal(err)
		}
		if err := ParseRequest(pdu, &h, &tr, false, &r); err != nil {
			t.Fatal(err)
		}
		if h.CallID != 3 || r.Opnum != 12 || r.ContextID != 0 || len(r.Stub) != 56 {
			t.Errorf("call %d opnum %d ctx %d stub %d", h.CallID, r.Opnum, r.ContextID, len(r.Stub))
		}
	})
	t.Run("auth trailer", func(t *testing.T) {
		pdu, h := rpcPDU(t, hexRequestAuth)
		var tr AuthTrailer
		ok, err := ParseAuthTrailer(pdu, &h, &tr)
		if !ok || err != nil {
			t.Fatal(ok, err)
		}
		if tr.Type != AuthTypeNTLMSSP || tr.Level != AuthLevelPrivacy || tr.PadLen != 4 || tr.ContextID != 0 ||
			tr.Offset != 112-16-8 || len(tr.Value) != 16 || !within(pdu, tr.Value) {
			t.Errorf("trailer %+v", tr)
		}
		// NTLMSSP verifier version 1 (MS-NLMP 2.2.2.9.1).
		if binary.LittleEndian.Uint32(tr.Value) != 1 {
			t.Errorf("verifier % x", tr.Value)
		}
		var r RequestPDU
		if err := ParseRequest(pdu, &h, &tr, false, &r); err != nil {
			t.Fatal(err)
		}
		if r.Opnum != 64 || r.AllocHint != 60 || len(r.Stub) != 60 {
			t.Errorf("without padding: opnum %d alloc %d stub %d", r.Opnum, r.AllocHint, len(r.Stub))
		}
		// Sealed: the padding is encrypted with the stub, so it is kept.
		if err := ParseRequest(pdu, &h, &tr, true, &r); err != nil || len(r.Stub) != 64 || r.StubOff+len(r.Stub) != tr.Offset {
			t.Errorf("with padding: stub %d ending at %d, %v", len(r.Stub), r.StubOff+len(r.Stub), err)
		}

		// Errors: a trailer that does not fit, padding into the header, cuts.
		short := pdu[:DCERPCHeaderLen+10]
		_, err = ParseAuthTrailer(short, &h, &tr)
		wantError(t, err, "dcerpc", ErrMalformed, len(short))
		bad := bytes.Clone(pdu)
		bad[112-16-8+2] = 200 // auth_pad_length
		if _, err := ParseAuthTrailer(bad, &h, &tr); err != nil {
			t.Fatal(err)
		}
		err = ParseRequest(bad, &h, &tr, false, &r)
		wantError(t, err, "dcerpc", ErrMalformed, len(bad))
		var none AuthTrailer
		for n := 0; n < 24; n++ {
			h2 := h
			h2.AuthLen = 0
			wantError(t, ParseRequest(pdu[:n], &h2, &none, false, &r), "dcerpc", ErrTruncated, n)
		}
	})
	t.Run("object uuid", func(t *testing.T) {
		pdu, h := rpcPDU(t, hexRequestNDR64)
		h.Flags |= PFCObjectUUID
		var r RequestPDU
		if err := ParseRequest(pdu, &h, &AuthTrailer{}, false, &r); err != nil || r.StubOff != 40 || len(r.Stub) != 194 {
			t.Errorf("object UUID not skipped: stub at %d, %d bytes, %v", r.StubOff, len(r.Stub), err)
		}
		wantError(t, ParseRequest(pdu[:39], &h, &AuthTrailer{}, false, &r), "dcerpc", ErrTruncated, 39)
	})
}

func TestParseResponse(t *testing.T) {
	t.Run("NDR64", func(t *testing.T) {
		pdu, h := rpcPDU(t, hexResponseNDR64)
		var r ResponsePDU
		if err := ParseResponse(pdu, &h, &AuthTrailer{}, false, &r); err != nil {
			t.Fatal(err)
		}
		// NetrJobAdd response: JobId 0, then ERROR_NOT_SUPPORTED (0x32).
		if r.ContextID != 1 || len(r.Stub) != 8 || binary.LittleEndian.Uint32(r.Stub[4:]) != 0x32 || r.Status != 0 {
			t.Errorf("response %+v", r)
		}
	})
	t.Run("sealed", func(t *testing.T) {
		pdu, h := rpcPDU(t, hexResponseSealed)
		var tr AuthTrailer
		if ok, err := ParseAuthTrailer(pdu, &h, &tr); !ok || err != nil {
			t.Fatal(ok, err)
		}
		// Impacket picks the auth context id at random: 79231 here.
		if tr.Level != AuthLevelPrivacy || tr.PadLen != 12 || tr.ContextID != 79231 {
			t.Errorf("trailer %+v", tr)
		}
		var r ResponsePDU
		if err := ParseResponse(pdu, &h, &tr, false, &r); err != nil || len(r.Stub) != 20 || int(r.AllocHint) != 20 {
			t.Errorf("stub %d alloc %d, %v", len(r.Stub), r.AllocHint, err)
		}
		if err := ParseResponse(pdu, &h, &tr, true, &r); err != nil || len(r.Stub) != 32 || r.StubOff != 24 {
			t.Errorf("sealed stub %d at %d, %v", len(r.Stub), r.StubOff, err)
		}
	})
	t.Run("fault", func(t *testing.T) {
		pdu, h := rpcPDU(t, hexFault)
		var r ResponsePDU
		if err := ParseResponse(pdu, &h, &AuthTrailer{}, false, &r); err != nil {
			t.Fatal(err)
		}
		if r.Status != 0x1c010002 || r.Stub != nil || r.AllocHint != 120 {
			t.Errorf("fault %+v", r)
		}
		wantError(t, ParseResponse(pdu[:27], &h, &AuthTrailer{}, false, &r), "dcerpc", ErrTruncated, 27)
		wantError(t, ParseResponse(pdu[:23], &h, &AuthTrailer{}, false, &r), "dcerpc", ErrTruncated, 23)
	})
}

func TestDCERPCNames(t *testing.T) {
	if PTypeName(PTypeBindAck) != "bind_ack" || PTypeName(PTypeOrphaned) != "orphaned" || PTypeName(42) != "ptype_42" {
		t.Error("PTypeName")
	}
	if AuthTypeName(AuthTypeNTLMSSP) != "NTLMSSP" || AuthTypeName(AuthTypeSPNEGO) != "SPNEGO" || AuthTypeName(77) != "authn_77" {
		t.Error("AuthTypeName")
	}
	if AuthLevelName(AuthLevelPrivacy) != "privacy" || AuthLevelName(AuthLevelConnect) != "connect" || AuthLevelName(9) != "level_9" {
		t.Error("AuthLevelName")
	}
}

// dcerpcDecode runs the decoders on one PDU the way sensor/rpc.go does and
// returns everything they produced, plus the sub-slices, for comparison.
func dcerpcDecode(b []byte) (out []any, subs [][]byte) {
	var h DCERPCHeader
	ok, need := PeekDCERPC(b, &h)
	out = append(out, ok, need)
	if !ok {
		return out, nil
	}
	out = append(out, h)
	pdu := b
	if int(h.FragLen) <= len(b) {
		pdu = b[:h.FragLen]
	}
	var tr AuthTrailer
	has, err := ParseAuthTrailer(pdu, &h, &tr)
	out = append(out, has, errText(err), tr.Type, tr.Level, tr.PadLen, tr.ContextID, tr.Offset, bytes.Clone(tr.Value))
	subs = append(subs, tr.Value)
	if err != nil {
		tr = AuthTrailer{}
	}
	for _, keep := range []bool{false, true} {
		var rq RequestPDU
		err := ParseRequest(pdu, &h, &tr, keep, &rq)
		out = append(out, errText(err), rq.AllocHint, rq.ContextID, rq.Opnum, rq.StubOff, bytes.Clone(rq.Stub))
		subs = append(subs, rq.Stub)
		var rs ResponsePDU
		err = ParseResponse(pdu, &h, &tr, keep, &rs)
		out = append(out, errText(err), rs.AllocHint, rs.ContextID, rs.CancelCount, rs.Status, rs.StubOff, bytes.Clone(rs.Stub))
		subs = append(subs, rs.Stub)
	}
	ctxs, err := ParseBind(pdu, &h, nil)
	out = append(out, ctxs, errText(err))
	res, err := ParseBindAck(pdu, &h, nil)
	out = append(out, res, errText(err))
	return out, subs
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// FuzzDCERPC decodes arbitrary PDUs with every decoder: no panic, stubs and
// verifiers inside the input, errors that say where, the same result twice.
func FuzzDCERPC(f *testing.F) {
	for _, h := range []string{hexBindBTFN, hexBindAckBTFN, hexRequestNDR64, hexResponseNDR64, hexRequestAuth,
		hexResponseSealed, hexFault, hexRequestConnect} {
		f.Add(wireHex(f, h))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		orig := bytes.Clone(b)
		out1, subs := dcerpcDecode(b)
		out2, _ := dcerpcDecode(b)
		if !reflect.DeepEqual(out1, out2) {
			t.Fatalf("two decodings differ:\n%v\n%v", out1, out2)
		}
		for _, s := range subs {
			if !within(b, s) {
				t.Fatal("a decoder returned bytes outside the input")
			}
		}
		var h DCERPCHeader
		if ok, _ := PeekDCERPC(b, &h); ok {
			pdu := b[:min(int(h.FragLen), len(b))]
			var tr AuthTrailer
			if _, err := ParseAuthTrailer(pdu, &h, &tr); err != nil {
				var de *Error
				if !errors.As(err, &de) || de.Offset < 0 || de.Offset > len(pdu) {
					t.Fatalf("trailer error %v has no offset inside the PDU", err)
				}
			}
			if _, err := ParseBind(pdu, &h, nil); err != nil {
				var de *Error
				if !errors.As(err, &de) || de.Offset < 0 || de.Offset > len(pdu) {
					t.Fatalf("bind error %v has no offset inside the PDU", err)
				}
			}
		}
		if !bytes.Equal(b, orig) {
			t.Fatal("a decoder modified its input")
		}
	})
}
