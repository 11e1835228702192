package dissect

import (
	"bytes"
	"encoding/asn1"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	krbcrypto "github.com/oiweiwei/gokrb5.fork/v9/crypto"
	"github.com/oiweiwei/gokrb5.fork/v9/crypto/etype"
	"github.com/oiweiwei/gokrb5.fork/v9/keytab"
	"github.com/oiweiwei/gokrb5.fork/v9/messages"
	"github.com/oiweiwei/gokrb5.fork/v9/types"
)

// The lab names used throughout: a member server's machine account.
const (
	testRealm   = "LAB.EXAMPLE"
	testSPN     = "host/srv.lab.example"
	testSvcPass = "Srv-Machine-Pass-2026!"
)

// testKeytab makes a keytab the way ktutil's addent -password does (gokrb5
// derives each key from the password with the principal's default salt)
// and returns it with its file bytes.
func testKeytab(t testing.TB, version uint8, kvno uint8, etypes ...int32) (*keytab.Keytab, []byte) {
	t.Helper()
	kt := keytab.New()
	kt.Version = version
	for _, spn := range []string{testSPN, "cifs/srv.lab.example"} {
		for _, et := range etypes {
			if err := kt.AddEntry(spn, testRealm, testSvcPass, time.Unix(1764500000, 0), kvno, et); err != nil {
				t.Fatal(err)
			}
		}
	}
	b, err := kt.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return kt, b
}

// mintedAPReq is an AP-REQ made with gokrb5's KDC-side and client-side
// types, standing in for what a KDC and a Windows client produce.
type mintedAPReq struct {
	raw        []byte // the bare AP-REQ
	session    types.EncryptionKey
	subkey     types.EncryptionKey
	seq        uint32
	ticketTime time.Time
}

func mintAPReq(t testing.TB, kt *keytab.Keytab, sname string, kvno int, etype int32, gssFlags uint32, withSubkey bool) mintedAPReq {
	t.Helper()
	cname := types.PrincipalName{NameType: 1, NameString: []string{"analyst"}}
	sn := types.PrincipalName{NameType: 2, NameString: strings.Split(sname, "/")}
	auth := time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)
	tkt, session, err := messages.NewTicket(cname, testRealm, sn, testRealm, types.NewKrbFlags(), kt, etype, kvno,
		auth, auth, auth.Add(10*time.Hour), auth.Add(24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	a, err := types.NewAuthenticator(testRealm, cname)
	if err != nil {
		t.Fatal(err)
	}
	m := mintedAPReq{session: session, ticketTime: auth}
	if withSubkey {
		if err := a.GenerateSeqNumberAndSubKey(session.KeyType, len(session.KeyValue)); err != nil {
			t.Fatal(err)
		}
		m.subkey = a.SubKey
	} else {
		a.SeqNumber = 0x12345678
	}
	m.seq = uint32(a.SeqNumber)
	ck := make([]byte, 24)
	binary.LittleEndian.PutUint32(ck, 16)
	binary.LittleEndian.PutUint32(ck[20:], gssFlags)
	a.Cksum = types.Checksum{CksumType: gssChecksumType, Checksum: ck}
	req, err := messages.NewAPReq(tkt, session, a)
	if err != nil {
		t.Fatal(err)
	}
	m.raw, err = req.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// gssWrap frames a Kerberos message as an RFC 4121 4.1 GSS token.
func gssWrap(tokID byte, msg []byte) []byte {
	oid, _ := asn1.Marshal(oidKerberos5)
	inner := append(append(oid, tokID, 0), msg...)
	b, _ := asn1.Marshal(asn1.RawValue{Class: asn1.ClassApplication, Tag: 0, IsCompound: true, Bytes: inner})
	return b
}

// spnegoInit frames mechToken in a GSS-wrapped SPNEGO NegTokenInit
// (RFC 4178 4.2.1) offering MS Kerberos and Kerberos 5.
func spnegoInit(mechToken []byte) []byte {
	mechs, _ := asn1.Marshal([]asn1.ObjectIdentifier{oidMSKerberos, oidKerberos5})
	f0, _ := asn1.Marshal(asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: mechs})
	oct, _ := asn1.Marshal(mechToken)
	f2, _ := asn1.Marshal(asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 2, IsCompound: true, Bytes: oct})
	seq, _ := asn1.Marshal(asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSequence, IsCompound: true,
		Bytes: append(f0, f2...)})
	init, _ := asn1.Marshal(asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: seq})
	oid, _ := asn1.Marshal(oidSPNEGO)
	b, _ := asn1.Marshal(asn1.RawValue{Class: asn1.ClassApplication, Tag: 0, IsCompound: true, Bytes: append(oid, init...)})
	return b
}

// spnegoResp frames responseToken in a NegTokenResp accept-completed.
func spnegoResp(tok []byte) []byte {
	st, _ := asn1.Marshal(asn1.Enumerated(0))
	f0, _ := asn1.Marshal(asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: st})
	oct, _ := asn1.Marshal(tok)
	f2, _ := asn1.Marshal(asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 2, IsCompound: true, Bytes: oct})
	seq, _ := asn1.Marshal(asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSequence, IsCompound: true,
		Bytes: append(f0, f2...)})
	b, _ := asn1.Marshal(asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 1, IsCompound: true, Bytes: seq})
	return b
}

func keysFromKeytab(t testing.TB, file []byte) *KerberosKeys {
	t.Helper()
	keys, skipped, err := ParseKeytab(file)
	if err != nil {
		t.Fatal(err)
	}
	if skipped != (KeytabSkipped{}) {
		t.Fatalf("skipped %+v", skipped)
	}
	var ks KerberosKeys
	ks.Add(keys...)
	return &ks
}

func TestOpenAPReqForms(t *testing.T) {
	for _, etype := range []int32{KerberosETypeAES256, KerberosETypeAES128, KerberosETypeRC4} {
		kt, file := testKeytab(t, 2, 7, KerberosETypeAES256, KerberosETypeAES128, KerberosETypeRC4)
		ks := keysFromKeytab(t, file)
		m := mintAPReq(t, kt, testSPN, 7, etype, GSSFlagDCEStyle|GSSFlagConf|GSSFlagInteg|GSSFlagMutual, true)
		forms := map[string][]byte{
			"raw (DCE style, auth type 16)":     m.raw,
			"GSS token":                         gssWrap(1, m.raw),
			"SPNEGO with GSS token (SMB)":       spnegoInit(gssWrap(1, m.raw)),
			"SPNEGO with bare AP-REQ (type 9)":  spnegoInit(m.raw),
			"GSS token with trailing garbage":   append(gssWrap(1, m.raw), 0, 0, 0),
			"SPNEGO token, DER-padded trailing": append(spnegoInit(gssWrap(1, m.raw)), 0),
		}
		for name, tok := range forms {
			t.Run(fmt.Sprintf("%s/%s", KerberosETypeName(etype), name), func(t *testing.T) {
				c, err := OpenAPReq(tok, ks)
				if err != nil {
					t.Fatal(err)
				}
				if c.ClientName != "analyst" || c.ClientRealm != testRealm || c.Client() != "analyst@"+testRealm {
					t.Errorf("client %q %q", c.ClientName, c.ClientRealm)
				}
				if c.ServiceName != testSPN || c.ServiceRealm != testRealm || c.TicketKVNO != 7 || c.TicketEType != etype {
					t.Errorf("service %q@%q kvno %d etype %d", c.ServiceName, c.ServiceRealm, c.TicketKVNO, c.TicketEType)
				}
				if !c.AuthTime.Equal(m.ticketTime) {
					t.Errorf("auth time %v, want %v", c.AuthTime, m.ticketTime)
				}
				if !c.HasGSSChecksum || !c.DCEStyle() || c.GSSFlags&GSSFlagConf == 0 {
					t.Errorf("GSS flags %#x (checksum %v)", c.GSSFlags, c.HasGSSChecksum)
				}
				if c.InitiatorSeq != m.seq {
					t.Errorf("seq %#x, want %#x", c.InitiatorSeq, m.seq)
				}
				// Without an AP-REP, the initiator's subkey protects messages.
				if !bytes.Equal(c.FullSessionKey(), m.subkey.KeyValue) || c.MessageKeyEType() != etype {
					t.Error("message key is not the authenticator subkey")
				}
				if !strings.Contains(c.OpenedWith, testSPN) || strings.Contains(fmt.Sprint(c), fmt.Sprintf("%x", m.session.KeyValue[:4])) {
					t.Errorf("OpenedWith %q / String %q", c.OpenedWith, c)
				}
			})
		}
	}
}

func TestOpenAPReqKeyChoice(t *testing.T) {
	kt, _ := testKeytab(t, 2, 3, KerberosETypeAES256)
	m := mintAPReq(t, kt, testSPN, 3, KerberosETypeAES256, GSSFlagMutual, false)
	right, err := KerberosKeyFromPassword("srv$", "lab.example", KerberosETypeAES256, testSvcPass)
	if err != nil {
		t.Fatal(err)
	}
	decoy, _ := KerberosKeyFromPassword("other$", "lab.example", KerberosETypeAES256, "x")
	rc4 := must(NewKerberosKey("srv$", testRealm, 0, KerberosETypeRC4, make([]byte, 16)))

	// The machine account's password-derived key opens a ticket for one of
	// its SPNs: the AD salt of srv$ is the default salt of host/srv.lab.example.
	var ks KerberosKeys
	ks.Add(decoy, rc4, right)
	c, err := OpenAPReq(m.raw, &ks)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(c.OpenedWith, "srv$@LAB.EXAMPLE") {
		t.Errorf("opened with %q", c.OpenedWith)
	}
	// No subkey: the ticket's session key is the message key.
	if !bytes.Equal(c.FullSessionKey(), m.session.KeyValue) {
		t.Error("message key is not the ticket session key")
	}

	var onlyRC4 KerberosKeys
	onlyRC4.Add(rc4)
	if _, err := OpenAPReq(m.raw, &onlyRC4); !errors.Is(err, ErrKerberosNoKey) {
		t.Errorf("no AES key: %v", err)
	}
	var wrong KerberosKeys
	wrong.Add(decoy)
	_, err = OpenAPReq(m.raw, &wrong)
	if !errors.Is(err, ErrKerberosWrongKey) {
		t.Errorf("wrong key: %v", err)
	}
	if _, err := OpenAPReq(m.raw, nil); !errors.Is(err, ErrKerberosNoKey) {
		t.Errorf("nil key set: %v", err)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func TestKerberosCandidatesOrder(t *testing.T) {
	mk := func(p, r string, kvno uint32, b byte) KerberosKey {
		return must(NewKerberosKey(p, r, kvno, KerberosETypeAES256, bytes.Repeat([]byte{b}, 32)))
	}
	var ks KerberosKeys
	ks.Add(
		mk("alice", testRealm, 1, 1),
		mk("cifs/srv.lab.example", testRealm, 4, 2), // principal, other kvno
		mk("HOST/SRV.lab.example", "lab.example", 5, 3),
		mk("srv$", "", 0, 4),                        // account key: matches by host name
		mk("host/srv.lab.example", testRealm, 5, 3), // same bytes as #3: returned once
		mk("host/srv.lab.example", "OTHER.REALM", 5, 5),
	)
	ks.Add(must(NewKerberosKey("host/srv.lab.example", testRealm, 5, KerberosETypeRC4, make([]byte, 16))))
	got := ks.Candidates(KerberosETypeAES256, 5, []string{"host", "srv.lab.example"}, testRealm)
	var names []string
	for _, k := range got {
		names = append(names, fmt.Sprintf("%s@%s/%d", k.Principal, k.Realm, k.KVNO))
	}
	want := []string{"HOST/SRV.lab.example@lab.example/5", "srv$@/0", "alice@LAB.EXAMPLE/1",
		"cifs/srv.lab.example@LAB.EXAMPLE/4", "host/srv.lab.example@OTHER.REALM/5"}
	if strings.Join(names, " ") != strings.Join(want, " ") {
		t.Errorf("order\n got %v\nwant %v", names, want)
	}
}

func TestOpenAPRepAndSessionKeys(t *testing.T) {
	kt, file := testKeytab(t, 2, 2, KerberosETypeAES256)
	ks := keysFromKeytab(t, file)
	m := mintAPReq(t, kt, testSPN, 2, KerberosETypeAES256, GSSFlagMutual|GSSFlagConf, true)
	c, err := OpenAPReq(spnegoInit(gssWrap(1, m.raw)), ks)
	if err != nil {
		t.Fatal(err)
	}
	acc, _ := types.GenerateEncryptionKey(must(krbEType(KerberosETypeAES256)))
	part := messages.NewEncAPRepPart(0x0badcafe)
	part.Subkey = acc
	rep, err := messages.NewAPRep(m.session, part)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := rep.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	// The initiator's third leg (no subkey) is checked and changes nothing.
	third, _ := messages.NewAPRep(m.session, messages.NewEncAPRepPart(int64(c.InitiatorSeq)))
	thirdRaw, _ := third.Marshal()
	if err := c.OpenAPRep(thirdRaw, false); err != nil || c.HasAPRep {
		t.Fatalf("third leg: %v %v", err, c.HasAPRep)
	}
	if err := c.OpenAPRep(spnegoResp(gssWrap(2, raw)), true); err != nil {
		t.Fatal(err)
	}
	if !c.HasAPRep || c.AcceptorSeq != 0x0badcafe || !c.HasAcceptorSubkey() {
		t.Errorf("AP-REP: %v %#x %v", c.HasAPRep, c.AcceptorSeq, c.HasAcceptorSubkey())
	}
	// The acceptor subkey wins (RFC 4121 2, MS-KILE 3.4.5.4).
	if !bytes.Equal(c.FullSessionKey(), acc.KeyValue) || len(c.FullSessionKey()) != 32 {
		t.Error("message key is not the acceptor subkey")
	}
	if !bytes.Equal(c.SessionKey(), acc.KeyValue[:16]) {
		t.Error("SessionKey is not the first 16 bytes")
	}
	for _, tc := range []struct {
		dialect, cipher uint16
		n               int
	}{
		{SMB2Dialect300, SMB3CipherAES128CCM, 16},
		{SMB2Dialect311, SMB3CipherAES128GCM, 16},
		{SMB2Dialect311, SMB3CipherAES256CCM, 32},
		{SMB2Dialect311, SMB3CipherAES256GCM, 32},
	} {
		if k := c.SMBSessionKey(tc.dialect, tc.cipher); len(k) != tc.n || !bytes.Equal(k, acc.KeyValue[:tc.n]) {
			t.Errorf("dialect %#x cipher %d: %d-byte key", tc.dialect, tc.cipher, len(k))
		}
	}
	// An AP-REP under another key is refused and leaves the context alone.
	other, _ := types.GenerateEncryptionKey(must(krbEType(KerberosETypeAES256)))
	bad, _ := messages.NewAPRep(other, part)
	badRaw, _ := bad.Marshal()
	if err := c.OpenAPRep(badRaw, true); err == nil {
		t.Error("AP-REP under a foreign key accepted")
	}
	var nilCtx *KerberosContext
	if err := nilCtx.OpenAPRep(raw, true); !errors.Is(err, ErrKerberosNoContext) {
		t.Errorf("nil context: %v", err)
	}
}

func TestOpenAPReqMalformed(t *testing.T) {
	kt, file := testKeytab(t, 2, 2, KerberosETypeAES256)
	ks := keysFromKeytab(t, file)
	m := mintAPReq(t, kt, testSPN, 2, KerberosETypeAES256, 0, false)
	for i := 0; i < len(m.raw); i += 7 {
		if _, err := OpenAPReq(m.raw[:i], ks); err == nil {
			t.Fatalf("truncated at %d: no error", i)
		}
	}
	for i := 0; i < len(m.raw); i++ {
		b := append([]byte(nil), m.raw...)
		b[i] ^= 0x41
		OpenAPReq(b, ks) // must not panic; a flipped byte may still parse
	}
	if _, err := OpenAPReq(gssWrap(2, m.raw), ks); err == nil {
		t.Error("AP-REQ under the AP-REP TOK_ID accepted")
	}
}

func TestKeytabVersions(t *testing.T) {
	for _, v := range []uint8{2, 1} {
		kt, file := testKeytab(t, v, 9, KerberosETypeAES256, KerberosETypeAES128, KerberosETypeRC4)
		if file[0] != 5 || file[1] != v {
			t.Fatalf("header % x", file[:2])
		}
		keys, _, err := ParseKeytab(file)
		if err != nil {
			t.Fatalf("v%d: %v", v, err)
		}
		if len(keys) != 6 {
			t.Fatalf("v%d: %d keys", v, len(keys))
		}
		for i, k := range keys {
			e := kt.Entries[i]
			if k.Principal != strings.Join(e.Principal.Components, "/") || k.Realm != testRealm || k.KVNO != 9 ||
				k.EType != e.Key.KeyType || !bytes.Equal(k.value, e.Key.KeyValue) {
				t.Errorf("v%d entry %d: %#v", v, i, k)
			}
		}
	}
}

func TestKeytabErrorsNeverQuoteTheFile(t *testing.T) {
	_, file := testKeytab(t, 2, 1, KerberosETypeAES256)
	keyHex := fmt.Sprintf("%x", file[len(file)-36:len(file)-4])
	for n := 0; n < len(file); n++ {
		_, _, err := ParseKeytab(file[:n])
		if n > 2 && err == nil && n != len(file) {
			// A cut exactly between entries is a valid shorter keytab.
			continue
		}
		if err != nil {
			if !errors.Is(err, ErrKeytab) {
				t.Errorf("cut at %d: %v is not ErrKeytab", n, err)
			}
			if msg := err.Error(); strings.Contains(msg, keyHex[:8]) || strings.Contains(msg, string(file[len(file)-36:len(file)-30])) || len(msg) > 200 {
				t.Errorf("cut at %d: error quotes the file: %q", n, msg)
			}
		}
	}
	// A DES entry is skipped and counted, not an error.
	kt := keytab.New()
	kt.Entries = append(kt.Entries, keytab.Entry{Principal: keytab.Principal{NumComponents: 1, Realm: testRealm,
		Components: []string{"x"}, NameType: 1}, KVNO8: 1, KVNO: 1, Key: types.EncryptionKey{KeyType: 3, KeyValue: make([]byte, 8)}})
	b, _ := kt.Marshal()
	keys, skipped, err := ParseKeytab(b)
	if err != nil || len(keys) != 0 || skipped.UnsupportedEType != 1 {
		t.Errorf("DES entry: %v %d %+v", err, len(keys), skipped)
	}
}

func TestKerberosKeyRedaction(t *testing.T) {
	k := must(NewKerberosKey("srv$", testRealm, 2, KerberosETypeAES128, bytes.Repeat([]byte{0xab}, 16)))
	for _, s := range []string{k.String(), k.GoString(), fmt.Sprintf("%v %+v %#v %s", k, k, k, k), k.LogValue().String()} {
		if strings.Contains(strings.ToLower(s), "abab") || strings.Contains(s, "171") {
			t.Errorf("key shown: %s", s)
		}
	}
	if _, err := NewKerberosKey("x", "", 0, KerberosETypeAES256, make([]byte, 16)); err == nil {
		t.Error("16-byte AES-256 key accepted")
	}
	if _, err := NewKerberosKey("x", "", 0, 1, make([]byte, 8)); !errors.Is(err, ErrKerberosUnsupported) {
		t.Errorf("DES: %v", err)
	}
}

func krbEType(id int32) (etype.EType, error) { return krbcrypto.GetEtype(id) }

// TestKerberosKeyTrialsBound: past MaxKerberosKeyTrials unrelated keys the
// right key, filed under another name, is not reached; filed under the
// ticket's service it is tried first whatever the crowd.
func TestKerberosKeyTrialsBound(t *testing.T) {
	kt, file := testKeytab(t, 2, 6, KerberosETypeAES256)
	m := mintAPReq(t, kt, testSPN, 6, KerberosETypeAES256, 0, false)
	right := keysFromKeytab(t, file).Keys()[0]
	var crowd []KerberosKey
	for i := 0; i < MaxKerberosKeyTrials; i++ {
		v := bytes.Repeat([]byte{byte(i), byte(i >> 8)}, 16)
		crowd = append(crowd, must(NewKerberosKey(fmt.Sprintf("ws%d$", i), testRealm, 1, KerberosETypeAES256, v)))
	}
	misfiled := right
	misfiled.Principal, misfiled.KVNO = "unrelated$", 0
	var ks KerberosKeys
	ks.Add(crowd...)
	ks.Add(misfiled)
	if _, err := OpenAPReq(m.raw, &ks); !errors.Is(err, ErrKerberosWrongKey) {
		t.Errorf("key behind %d others: %v", MaxKerberosKeyTrials, err)
	}
	ks.Add(right)
	if _, err := OpenAPReq(m.raw, &ks); err != nil {
		t.Errorf("key filed under the service: %v", err)
	}
}
