package dissect

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"testing"
)

// unhexSpaced reads RFC-style hex ("42 26 3c ...").
func unhexSpaced(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestStringToKeyRFC3962 runs every string-to-key vector of RFC 3962
// Appendix B through KerberosStringToKey: PBKDF2-HMAC-SHA1 with the
// iteration count, then the RFC 3961 DK(tkey, "kerberos") step, for both
// key sizes.
func TestStringToKeyRFC3962(t *testing.T) {
	for _, v := range []struct {
		iter           uint32
		pass, salt     string
		key128, key256 string
	}{
		{1, "password", "ATHENA.MIT.EDUraeburn",
			"42 26 3c 6e 89 f4 fc 28 b8 df 68 ee 09 79 9f 15",
			"fe 69 7b 52 bc 0d 3c e1 44 32 ba 03 6a 92 e6 5b bb 52 28 09 90 a2 fa 27 88 39 98 d7 2a f3 01 61"},
		{2, "password", "ATHENA.MIT.EDUraeburn",
			"c6 51 bf 29 e2 30 0a c2 7f a4 69 d6 93 bd da 13",
			"a2 e1 6d 16 b3 60 69 c1 35 d5 e9 d2 e2 5f 89 61 02 68 56 18 b9 59 14 b4 67 c6 76 22 22 58 24 ff"},
		{1200, "password", "ATHENA.MIT.EDUraeburn",
			"4c 01 cd 46 d6 32 d0 1e 6d be 23 0a 01 ed 64 2a",
			"55 a6 ac 74 0a d1 7b 48 46 94 10 51 e1 e8 b0 a7 54 8d 93 b0 ab 30 a8 bc 3f f1 62 80 38 2b 8c 2a"},
		{5, "password", "\x12\x34\x56\x78\x78\x56\x34\x12",
			"e9 b2 3d 52 27 37 47 dd 5c 35 cb 55 be 61 9d 8e",
			"97 a4 e7 86 be 20 d8 1a 38 2d 5e bc 96 d5 90 9c ab cd ad c8 7c a4 8f 57 45 04 15 9f 16 c3 6e 31"},
		{1200, strings.Repeat("X", 64), "pass phrase equals block size",
			"59 d1 bb 78 9a 82 8b 1a a5 4e f9 c2 88 3f 69 ed",
			"89 ad ee 36 08 db 8b c7 1f 1b fb fe 45 94 86 b0 56 18 b7 0c ba e2 20 92 53 4e 56 c5 53 ba 4b 34"},
		{1200, strings.Repeat("X", 65), "pass phrase exceeds block size",
			"cb 80 05 dc 5f 90 17 9a 7f 02 10 4c 00 18 75 1d",
			"d7 8c 5c 9c b8 72 a8 c9 da d4 69 7f 0b b5 b2 d2 14 96 c8 2b eb 2c ae da 21 12 fc ee a0 57 40 1b"},
		{50, "\U0001D11E", "EXAMPLE.COMpianist", // g-clef, UTF-8 f0 9d 84 9e
			"f1 49 c1 f2 e1 54 a7 34 52 d4 3e 7f e6 2a 56 e5",
			"4b 6d 98 39 f8 44 06 df 1f 09 cc 16 6d b4 b8 3c 57 18 48 b7 84 a3 d6 bd c3 46 58 9a 3e 39 3f 9e"},
	} {
		for _, c := range []struct {
			etype int32
			want  string
		}{{KerberosETypeAES128, v.key128}, {KerberosETypeAES256, v.key256}} {
			got, err := KerberosStringToKey(c.etype, v.pass, v.salt, v.iter)
			if err != nil {
				t.Fatal(err)
			}
			if want := unhexSpaced(t, c.want); !bytes.Equal(got, want) {
				t.Errorf("%s iter %d salt %q: %x, want %x", KerberosETypeName(c.etype), v.iter, v.salt, got, want)
			}
		}
	}
	if _, err := KerberosStringToKey(KerberosETypeAES256, "p", "s", 0); err == nil {
		t.Error("zero iterations accepted")
	}
}

// TestAESCTSRFC3962 pins the AES-CTS the ticket and token decryption rest
// on (gokrb5's, through the etype) to RFC 3962 Appendix B's vectors, key
// "chicken teriyaki", zero IV.
func TestAESCTSRFC3962(t *testing.T) {
	et := must(krbEType(KerberosETypeAES128))
	key := []byte("chicken teriyaki")
	in := []byte("I would like the General Gau's Chicken, please, and wonton soup.")
	for _, v := range []struct {
		n   int
		out string
	}{
		{17, "c6 35 35 68 f2 bf 8c b4 d8 a5 80 36 2d a7 ff 7f 97"},
		{31, "fc 00 78 3e 0e fd b2 c1 d4 45 d4 c8 ef f7 ed 22 97 68 72 68 d6 ec cc c0 c0 7b 25 e2 5e cf e5"},
		{32, "39 31 25 23 a7 86 62 d5 be 7f cb cc 98 eb f5 a8 97 68 72 68 d6 ec cc c0 c0 7b 25 e2 5e cf e5 84"},
		{47, "97 68 72 68 d6 ec cc c0 c0 7b 25 e2 5e cf e5 84 b3 ff fd 94 0c 16 a1 8c 1b 55 49 d2 f8 38 02 9e 39 31 25 23 a7 86 62 d5 be 7f cb cc 98 eb f5"},
		{48, "97 68 72 68 d6 ec cc c0 c0 7b 25 e2 5e cf e5 84 9d ad 8b bb 96 c4 cd c0 3b c1 03 e1 a1 94 bb d8 39 31 25 23 a7 86 62 d5 be 7f cb cc 98 eb f5 a8"},
		{64, "97 68 72 68 d6 ec cc c0 c0 7b 25 e2 5e cf e5 84 39 31 25 23 a7 86 62 d5 be 7f cb cc 98 eb f5 a8 48 07 ef e8 36 ee 89 a5 26 73 0d bc 2f 7b c8 40 9d ad 8b bb 96 c4 cd c0 3b c1 03 e1 a1 94 bb d8"},
	} {
		want := unhexSpaced(t, v.out)
		_, got, err := et.EncryptData(key, in[:v.n])
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%d bytes: encrypt %x (%v), want %x", v.n, got, err, want)
		}
		back, err := et.DecryptData(key, want)
		if err != nil || !bytes.Equal(back, in[:v.n]) {
			t.Errorf("%d bytes: decrypt %q (%v)", v.n, back, err)
		}
	}
}

// TestRC4KeyIsNTHash: RFC 4757 2's string-to-key is MD4(UTF-16LE(password)),
// the NT hash; gokrb5's etype 23 agrees, and so does the hash every Windows
// tool prints for "password".
func TestRC4KeyIsNTHash(t *testing.T) {
	got, err := KerberosStringToKey(KerberosETypeRC4, "password", "ignored", 4096)
	if err != nil {
		t.Fatal(err)
	}
	if want := unhexSpaced(t, "88 46 f7 ea ee 8f b1 17 ad 06 bd d8 30 b7 58 6c"); !bytes.Equal(got, want) {
		t.Errorf("%x, want %x", got, want)
	}
	lib, err := must(krbEType(KerberosETypeRC4)).StringToKey("password", "", "")
	if err != nil || !bytes.Equal(lib, got) {
		t.Errorf("gokrb5 rc4-hmac string-to-key %x (%v)", lib, err)
	}
}

// TestKerberosSalt: MS-KILE 3.1.1.2's salts, checked against the keys MIT
// ktutil derives with the default salt of the machine's host/ SPN.
func TestKerberosSalt(t *testing.T) {
	for _, c := range []struct{ principal, realm, want string }{
		{"alice", "lab.example", "LAB.EXAMPLEalice"},
		{"SRV$", "lab.example", "LAB.EXAMPLEhostsrv.lab.example"},
		{"host/srv.lab.example", "LAB.EXAMPLE", "LAB.EXAMPLEhostsrv.lab.example"},
	} {
		if got := KerberosSalt(c.principal, c.realm); got != c.want {
			t.Errorf("%s@%s: %q, want %q", c.principal, c.realm, got, c.want)
		}
	}
}

// TestMITKeytab reads a keytab MIT ktutil wrote (testdata/krb5/
// make_keytab.sh) and checks each key against the one derived here from
// the same password with the AD salt of the machine account srv$ (or, for
// the cifs/ entry, the SPN's own RFC 4120 salt, which is what MIT uses).
func TestMITKeytab(t *testing.T) {
	file, err := os.ReadFile("testdata/krb5/mit-ktutil.keytab")
	if err != nil {
		t.Fatal(err)
	}
	keys, skipped, err := ParseKeytab(file)
	if err != nil || skipped != (KeytabSkipped{}) {
		t.Fatalf("%v %+v", err, skipped)
	}
	want := []string{"host/srv.lab.example 18", "host/srv.lab.example 17", "host/srv.lab.example 23", "cifs/srv.lab.example 18"}
	if len(keys) != len(want) {
		t.Fatalf("%d keys", len(keys))
	}
	for i, k := range keys {
		if got := fmt.Sprintf("%s %d", k.Principal, k.EType); got != want[i] || k.Realm != testRealm || k.KVNO != 3 {
			t.Errorf("entry %d: %s %s %d", i, got, k.Realm, k.KVNO)
		}
		// MIT salts with the principal, AD with the account: for host/ the
		// two agree, for cifs/ only the principal's own salt fits.
		account := "srv$"
		if strings.HasPrefix(k.Principal, "cifs/") {
			account = k.Principal
		}
		derived, err := KerberosKeyFromPassword(account, "lab.example", k.EType, testSvcPass)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(derived.value, k.value) {
			t.Errorf("entry %d (%s): MIT's key differs from ours", i, KerberosETypeName(k.EType))
		}
	}
}

// TestDKRFC3962: the RFC 3961 DK(tkey, "kerberos") step on its own, from
// RFC 3962 Appendix B's PBKDF2 outputs to its keys (RFC 3961's own DK
// vectors are for DES3, which this package does not use).
func TestDKRFC3962(t *testing.T) {
	for _, v := range []struct {
		etype     int32
		tkey, key string
	}{
		{KerberosETypeAES128, "cd ed b5 28 1b b2 f8 01 56 5a 11 22 b2 56 35 15",
			"42 26 3c 6e 89 f4 fc 28 b8 df 68 ee 09 79 9f 15"},
		{KerberosETypeAES256, "cd ed b5 28 1b b2 f8 01 56 5a 11 22 b2 56 35 15 0a d1 f7 a0 4b b9 f3 a3 33 ec c0 e2 e1 f7 08 37",
			"fe 69 7b 52 bc 0d 3c e1 44 32 ba 03 6a 92 e6 5b bb 52 28 09 90 a2 fa 27 88 39 98 d7 2a f3 01 61"},
		{KerberosETypeAES128, "5c 08 eb 61 fd f7 1e 4e 4e c3 cf 6b a1 f5 51 2b",
			"4c 01 cd 46 d6 32 d0 1e 6d be 23 0a 01 ed 64 2a"},
		{KerberosETypeAES256, "5c 08 eb 61 fd f7 1e 4e 4e c3 cf 6b a1 f5 51 2b a7 e5 2d db c5 e5 14 2f 70 8a 31 e2 e6 2b 1e 13",
			"55 a6 ac 74 0a d1 7b 48 46 94 10 51 e1 e8 b0 a7 54 8d 93 b0 ab 30 a8 bc 3f f1 62 80 38 2b 8c 2a"},
	} {
		got, err := must(krbEType(v.etype)).DeriveKey(unhexSpaced(t, v.tkey), []byte("kerberos"))
		if err != nil {
			t.Fatal(err)
		}
		if want := unhexSpaced(t, v.key); !bytes.Equal(got, want) {
			t.Errorf("%s DK(%s): %x, want %x", KerberosETypeName(v.etype), v.tkey[:8], got, want)
		}
	}
}
