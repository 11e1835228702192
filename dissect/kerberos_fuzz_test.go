package dissect

import (
	"bytes"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/oiweiwei/gokrb5.fork/v9/messages"
	"github.com/oiweiwei/gokrb5.fork/v9/types"
)

// Fuzz targets for the Kerberos parsers. Each asserts a property beyond
// "no panic"; seeds are real tokens (minted with gokrb5, as a KDC and a
// client make them) and keytabs written by gokrb5 and MIT ktutil, plus the
// corpora committed under testdata/fuzz/.

func FuzzOpenAPReq(f *testing.F) {
	kt, file := testKeytab(f, 2, 5, KerberosETypeAES256, KerberosETypeRC4)
	ks := keysFromKeytab(f, file)
	for _, et := range []int32{KerberosETypeAES256, KerberosETypeRC4} {
		m := mintAPReq(f, kt, testSPN, 5, et, GSSFlagDCEStyle|GSSFlagConf, et == KerberosETypeAES256)
		f.Add(m.raw)
		f.Add(gssWrap(1, m.raw))
		f.Add(spnegoInit(m.raw))
		f.Add(spnegoInit(gssWrap(1, m.raw)))
	}
	f.Fuzz(func(t *testing.T, tok []byte) {
		in := append([]byte(nil), tok...)
		c, err := OpenAPReq(tok, ks)
		if !bytes.Equal(in, tok) {
			t.Fatal("OpenAPReq modified its input")
		}
		if err != nil {
			if c != nil {
				t.Fatal("context with an error")
			}
			return
		}
		// Opened: the message key is usable and the same token opens the
		// same context again.
		if n := len(c.FullSessionKey()); n != kerberosKeyLen(c.MessageKeyEType()) {
			t.Fatalf("%d-byte message key for %s", n, KerberosETypeName(c.MessageKeyEType()))
		}
		c2, err := OpenAPReq(tok, ks)
		if err != nil || c2.Client() != c.Client() || !bytes.Equal(c2.FullSessionKey(), c.FullSessionKey()) {
			t.Fatalf("second opening differs: %v", err)
		}
	})
}

// FuzzKerberosEncParts feeds hostile plaintext to the readers of the
// decrypted parts: a client knows the session key, so the authenticator
// and (for a rogue acceptor) the EncAPRepPart are anyone's bytes.
func FuzzKerberosEncParts(f *testing.F) {
	kt, _ := testKeytab(f, 2, 5, KerberosETypeAES256)
	m := mintAPReq(f, kt, testSPN, 5, KerberosETypeAES256, GSSFlagDCEStyle, true)
	var req messages.APReq
	if err := req.Unmarshal(m.raw); err != nil {
		f.Fatal(err)
	}
	if plain, err := kerberosDecrypt(req.EncryptedAuthenticator, m.session, 11); err == nil {
		f.Add(byte(0), plain)
	}
	part := messages.NewEncAPRepPart(7)
	part.Subkey = m.subkey
	if b, err := part.Marshal(); err == nil {
		f.Add(byte(1), b)
	}
	if plain, err := kerberosDecrypt(req.Ticket.EncPart, keysFromKeytabEntry(f, kt), 2); err == nil {
		f.Add(byte(2), plain)
	}
	f.Fuzz(func(t *testing.T, which byte, plain []byte) {
		c := &KerberosContext{sessionKey: m.session}
		var err error
		switch which % 3 {
		case 0:
			err = c.readAuthenticator(plain)
		case 1:
			err = c.readEncAPRepPart(plain, true)
		case 2:
			err = c.readEncTicketPart(plain)
		}
		if err != nil {
			return
		}
		// Whatever key the bytes installed has the length its type needs.
		if k := c.gssKey(); len(k.KeyValue) != kerberosKeyLen(k.KeyType) {
			t.Fatalf("%d-byte key of type %d installed", len(k.KeyValue), k.KeyType)
		}
	})
}

func keysFromKeytabEntry(t testing.TB, kt interface{ Marshal() ([]byte, error) }) types.EncryptionKey {
	t.Helper()
	b, err := kt.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	keys, _, err := ParseKeytab(b)
	if err != nil || len(keys) == 0 {
		t.Fatal(err)
	}
	return keys[0].encryptionKey()
}

// FuzzKerberosUnseal feeds arbitrary PDUs and auth values to a context
// whose key made the seeds.
func FuzzKerberosUnseal(f *testing.F) {
	aes := types.EncryptionKey{KeyType: KerberosETypeAES256, KeyValue: bytes.Repeat([]byte{0x42}, 32)}
	rc4 := types.EncryptionKey{KeyType: KerberosETypeRC4, KeyValue: bytes.Repeat([]byte{0x17}, 16)}
	for i, key := range []types.EncryptionKey{aes, rc4} {
		for _, fromClient := range []bool{true, false} {
			for _, level := range []byte{testLevelPrivacy, testLevelIntegrity} {
				pdu, _, _ := sealPDU(f, key, false, fromClient, fromClient, level, 3, []byte("a sealed stub of some length"))
				f.Add(byte(i), fromClient, pdu)
			}
		}
	}
	f.Fuzz(func(t *testing.T, which byte, fromClient bool, pdu []byte) {
		key := aes
		if which&1 == 1 {
			key = rc4
		}
		c := testContext(key)
		body, err := dcerpcSignedBody(pdu)
		if err != nil {
			return
		}
		n := len(pdu)
		bodyOff := cap(pdu) - cap(body)
		auth := pdu[bodyOff+len(body)+8:]
		verr := c.Verify(fromClient, pdu, auth)
		uerr := c.Unseal(fromClient, pdu, body, auth)
		if len(pdu) != n {
			t.Fatal("PDU length changed")
		}
		for _, err := range []error{verr, uerr} {
			if err != nil && !errors.Is(err, ErrBadSignature) && !errors.Is(err, ErrMalformed) &&
				!errors.Is(err, ErrTruncated) && !errors.Is(err, ErrLimit) {
				t.Fatalf("unclassified error %v", err)
			}
		}
	})
}

func FuzzParseKeytab(f *testing.F) {
	for _, v := range []uint8{1, 2} {
		_, file := testKeytab(f, v, 3, KerberosETypeAES256, KerberosETypeRC4)
		f.Add(file)
	}
	if b, err := os.ReadFile("testdata/krb5/mit-ktutil.keytab"); err == nil {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		keys, _, err := ParseKeytab(b)
		if err != nil {
			if !errors.Is(err, ErrKeytab) {
				t.Fatalf("error %v is not ErrKeytab", err)
			}
			if len(err.Error()) > 120 {
				t.Fatalf("long error (quoting input?): %q", err)
			}
			return
		}
		for _, k := range keys {
			if len(k.value) != kerberosKeyLen(k.EType) || k.Principal == "" {
				t.Fatalf("bad key %v", k)
			}
		}
	})
}

func FuzzFindKerberosMessage(f *testing.F) {
	kt, _ := testKeytab(f, 2, 5, KerberosETypeAES256)
	m := mintAPReq(f, kt, testSPN, 5, KerberosETypeAES256, 0, false)
	rep, _ := messages.NewAPRep(m.session, messages.NewEncAPRepPart(1))
	repRaw, _ := rep.Marshal()
	for _, b := range [][]byte{m.raw, gssWrap(1, m.raw), spnegoInit(m.raw), spnegoInit(gssWrap(1, m.raw)),
		repRaw, gssWrap(2, repRaw), spnegoResp(gssWrap(2, repRaw)), spnegoResp(repRaw)} {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, blob []byte) {
		typ, msg := FindKerberosMessage(blob)
		if typ == KerberosNone {
			if msg != nil {
				t.Fatal("message without a type")
			}
			return
		}
		// The message aliases blob and is one element of the announced type.
		if len(msg) == 0 || !bytes.Contains(blob, msg) {
			t.Fatal("message is not part of the blob")
		}
		if t2, m2 := krbBareMessage(msg); t2 != typ || len(m2) != len(msg) {
			t.Fatalf("message re-reads as %v (%d of %d bytes)", t2, len(m2), len(msg))
		}
		_ = strings.ToValidUTF8(typ.String(), "")
	})
}
