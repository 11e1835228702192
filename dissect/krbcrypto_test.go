package dissect

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"testing"

	gsskrb5 "github.com/oiweiwei/go-msrpc/ssp/krb5/crypto"
	krbcrypto "github.com/oiweiwei/gokrb5.fork/v9/crypto"
	"github.com/oiweiwei/gokrb5.fork/v9/messages"
	"github.com/oiweiwei/gokrb5.fork/v9/types"
)

// DCE-RPC auth levels and Kerberos auth types (MS-RPCE 2.2.1.1.7, 2.2.1.1.8).
const (
	testLevelIntegrity = 5
	testLevelPrivacy   = 6
	testAuthKerberos   = 16
	testAuthSPNEGO     = 9
)

// testRPCPDU lays out a little-endian request (ptype 0) or response
// (ptype 2) with stub padded to 16 bytes, an 8-byte sec_trailer and room
// for an authLen-byte auth value. It returns the PDU and the offsets of the
// stub and of the sec_trailer.
func testRPCPDU(ptype byte, stub []byte, authType, level byte, authLen int) ([]byte, int, int) {
	pad := (16 - len(stub)%16) % 16
	body := append(append([]byte(nil), stub...), make([]byte, pad)...)
	pdu := make([]byte, 24, 24+len(body)+8+authLen)
	pdu[0], pdu[1], pdu[2], pdu[3] = 5, 0, ptype, 0x03
	pdu[4] = 0x10
	binary.LittleEndian.PutUint16(pdu[8:], uint16(24+len(body)+8+authLen))
	binary.LittleEndian.PutUint16(pdu[10:], uint16(authLen))
	binary.LittleEndian.PutUint32(pdu[12:], 2)
	binary.LittleEndian.PutUint32(pdu[16:], uint32(len(stub)))
	binary.LittleEndian.PutUint16(pdu[22:], 1) // opnum / cancel count
	pdu = append(pdu, body...)
	trailerOff := len(pdu)
	pdu = append(pdu, authType, level, byte(pad), 0, 0, 0, 0, 0)
	binary.LittleEndian.PutUint32(pdu[trailerOff+4:], 0x1234)
	pdu = append(pdu, make([]byte, authLen)...)
	return pdu, 24, trailerOff
}

// msrpcCipher is go-msrpc's own sealing code for one direction, the way
// its DCE-RPC client and server set it up (ssp/krb5/authentifier.go).
func msrpcCipher(t testing.TB, key types.EncryptionKey, fromClient, acceptorSubkey bool) gsskrb5.Cipher {
	t.Helper()
	et, err := krbcrypto.GetEtype(key.KeyType)
	if err != nil {
		t.Fatal(err)
	}
	c, err := gsskrb5.NewCipher(context.Background(), gsskrb5.CipherSetting{Key: key, Type: et,
		IsSubKey: acceptorSubkey, IsLocal: fromClient, DCEStyle: true})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func tokenLen(etype int32, sealed bool) int {
	switch {
	case etype == KerberosETypeRC4 && sealed:
		return 13 + rc4WrapTokenLen
	case etype == KerberosETypeRC4:
		return 13 + rc4MICTokenLen
	case sealed:
		return cfxHeaderLen + 16 + 28 + cfxConfounderLen
	}
	return cfxHeaderLen + cfxChecksumLen
}

// sealPDU seals (level 6) or signs (level 5) a PDU with go-msrpc, header
// signing or not.
func sealPDU(t testing.TB, key types.EncryptionKey, acceptorSubkey, fromClient, headerSign bool, level byte,
	seq uint64, stub []byte) (pdu []byte, stubOff, trailerOff int) {
	t.Helper()
	ptype := byte(0)
	if !fromClient {
		ptype = 2
	}
	pdu, stubOff, trailerOff = testRPCPDU(ptype, stub, testAuthKerberos, level, tokenLen(key.KeyType, level == testLevelPrivacy))
	header, body, trailer := pdu[:stubOff], pdu[stubOff:trailerOff], pdu[trailerOff:trailerOff+8]
	forSign := [][]byte{body}
	if headerSign {
		forSign = [][]byte{header, body, trailer}
	}
	c := msrpcCipher(t, key, fromClient, acceptorSubkey)
	var sig []byte
	var err error
	if level == testLevelPrivacy {
		sig, err = c.WrapEx(context.Background(), seq, forSign, [][]byte{body})
	} else {
		sig, err = c.MakeSignature(context.Background(), seq, forSign)
	}
	if err != nil {
		t.Fatal(err)
	}
	if len(sig) != len(pdu)-trailerOff-8 {
		t.Fatalf("go-msrpc token of %d bytes, laid out %d", len(sig), len(pdu)-trailerOff-8)
	}
	copy(pdu[trailerOff+8:], sig)
	return pdu, stubOff, trailerOff
}

func testContext(key types.EncryptionKey) *KerberosContext {
	return &KerberosContext{sessionKey: key}
}

func TestKerberosUnsealAgainstGoMSRPC(t *testing.T) {
	for _, etype := range []int32{KerberosETypeAES256, KerberosETypeAES128, KerberosETypeRC4} {
		for _, headerSign := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/headersign=%v", KerberosETypeName(etype), headerSign), func(t *testing.T) {
				key, _ := types.GenerateEncryptionKey(must(krbEType(etype)))
				rx := testContext(key)
				// A conversation: requests and responses interleaved, stubs of
				// lengths around the block sizes.
				for i, n := range []int{0, 1, 15, 16, 17, 100, 4096} {
					for _, fromClient := range []bool{true, false} {
						stub := bytes.Repeat([]byte{byte(i), 0xa5, byte(n)}, n/3+1)[:n]
						pdu, so, to := sealPDU(t, key, false, fromClient, headerSign, testLevelPrivacy, uint64(100+i), stub)
						if n > 0 && bytes.Contains(pdu, stub) && n > 8 {
							t.Fatalf("stub not sealed")
						}
						if err := rx.Unseal(fromClient, pdu, pdu[so:to], pdu[to+8:]); err != nil {
							t.Fatalf("PDU %d (%d bytes, client %v): %v", i, n, fromClient, err)
						}
						if !bytes.Equal(pdu[so:so+n], stub) {
							t.Fatalf("PDU %d: plaintext differs", i)
						}
					}
				}
				want := int8(-1)
				if headerSign {
					want = 1
				}
				if rx.headerSign != want {
					t.Errorf("header signing learnt as %d", rx.headerSign)
				}
			})
		}
	}
}

func TestKerberosUnsealRejects(t *testing.T) {
	for _, etype := range []int32{KerberosETypeAES256, KerberosETypeRC4} {
		t.Run(KerberosETypeName(etype), func(t *testing.T) {
			key, _ := types.GenerateEncryptionKey(must(krbEType(etype)))
			other, _ := types.GenerateEncryptionKey(must(krbEType(etype)))
			stub := []byte("SchRpcRegisterTask stub data, 48 bytes long....")
			seal := func() ([]byte, int, int) {
				return sealPDU(t, key, false, true, true, testLevelPrivacy, 7, stub)
			}
			pdu, so, to := seal()
			if err := testContext(other).Unseal(true, pdu, pdu[so:to], pdu[to+8:]); !errors.Is(err, ErrBadSignature) {
				t.Errorf("wrong key: %v", err)
			}
			pdu, so, to = seal()
			if err := testContext(key).Unseal(false, pdu, pdu[so:to], pdu[to+8:]); err == nil {
				t.Error("wrong direction accepted")
			}
			for _, at := range []int{3, so + 5, to + 2} {
				pdu, so, to = seal()
				pdu[at] ^= 1
				if err := testContext(key).Unseal(true, pdu, pdu[so:to], pdu[to+8:]); !errors.Is(err, ErrBadSignature) {
					t.Errorf("byte %d flipped: %v", at, err)
				}
			}
			pdu, so, to = seal()
			if err := testContext(key).Unseal(true, pdu, pdu[so+1:to], pdu[to+8:]); !errors.Is(err, ErrMalformed) {
				t.Errorf("stub not the PDU body: %v", err)
			}
			for n := 0; n < len(pdu)-to-8; n++ {
				pdu, so, to = seal()
				if err := testContext(key).Unseal(true, pdu, pdu[so:to], pdu[to+8:to+8+n]); err == nil {
					t.Errorf("auth value cut to %d accepted", n)
				}
			}
			var none KerberosContext
			if err := none.Unseal(true, pdu, pdu[so:to], pdu[to+8:]); !errors.Is(err, ErrKerberosNoContext) {
				t.Errorf("no key: %v", err)
			}
		})
	}
}

func TestKerberosVerifyAgainstGoMSRPC(t *testing.T) {
	for _, etype := range []int32{KerberosETypeAES256, KerberosETypeAES128, KerberosETypeRC4} {
		for _, headerSign := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/headersign=%v", KerberosETypeName(etype), headerSign), func(t *testing.T) {
				key, _ := types.GenerateEncryptionKey(must(krbEType(etype)))
				rx := testContext(key)
				for i := 0; i < 4; i++ {
					fromClient := i%2 == 0
					stub := bytes.Repeat([]byte{byte(i)}, 20+i)
					pdu, _, to := sealPDU(t, key, false, fromClient, headerSign, testLevelIntegrity, uint64(i/2), stub)
					if err := rx.Verify(fromClient, pdu, pdu[to+8:]); err != nil {
						t.Fatalf("PDU %d: %v", i, err)
					}
					pdu[30] ^= 0x80
					if err := rx.Verify(fromClient, pdu, pdu[to+8:]); !errors.Is(err, ErrBadSignature) {
						t.Fatalf("PDU %d tampered: %v", i, err)
					}
				}
			})
		}
	}
}

// TestKerberosContextEndToEnd opens a minted AP-REQ and the acceptor's
// AP-REP, then unseals traffic go-msrpc sealed with the acceptor subkey
// (the key both directions use once an AP-REP carried one).
func TestKerberosContextEndToEnd(t *testing.T) {
	kt, file := testKeytab(t, 2, 4, KerberosETypeAES256, KerberosETypeRC4)
	ks := keysFromKeytab(t, file)
	for _, etype := range []int32{KerberosETypeAES256, KerberosETypeRC4} {
		m := mintAPReq(t, kt, testSPN, 4, etype, GSSFlagDCEStyle|GSSFlagMutual|GSSFlagConf, true)
		c, err := OpenAPReq(m.raw, ks)
		if err != nil {
			t.Fatal(err)
		}
		acc, _ := types.GenerateEncryptionKey(must(krbEType(etype)))
		part := messages.NewEncAPRepPart(99)
		part.Subkey = acc
		rep, _ := messages.NewAPRep(m.session, part)
		raw, _ := rep.Marshal()
		if err := c.OpenAPRep(raw, true); err != nil {
			t.Fatal(err)
		}
		var s Sealer = c
		for i, fromClient := range []bool{true, false, true} {
			stub := []byte(fmt.Sprintf("<Task><Exec><Command>cmd.exe</Command><Arguments>/c whoami %d</Arguments></Exec></Task>", i))
			pdu, so, to := sealPDU(t, acc, true, fromClient, true, testLevelPrivacy, uint64(i), stub)
			if err := s.Unseal(fromClient, pdu, pdu[so:to], pdu[to+8:]); err != nil {
				t.Fatalf("%s PDU %d: %v", KerberosETypeName(etype), i, err)
			}
			if !bytes.Equal(pdu[so:so+len(stub)], stub) {
				t.Fatalf("%s PDU %d: plaintext differs", KerberosETypeName(etype), i)
			}
		}
		// Sealed with the initiator's subkey instead: refused.
		pdu, so, to := sealPDU(t, m.subkey, false, true, true, testLevelPrivacy, 3, []byte("0123456789abcdef"))
		if err := s.Unseal(true, pdu, pdu[so:to], pdu[to+8:]); err == nil {
			t.Errorf("%s: PDU under the superseded key accepted", KerberosETypeName(etype))
		}
	}
}

// TestKerberosUnsealImpacketVectors opens PDUs Impacket sealed and signed
// (dissect/testdata/krb5/gen_vectors.py made them once; see its comment):
// an implementation independent of the go-msrpc code Unseal calls.
func TestKerberosUnsealImpacketVectors(t *testing.T) {
	data, err := os.ReadFile("testdata/krb5/impacket_vectors.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	var n int
	for _, line := range bytes.Split(bytes.TrimSpace(data), []byte("\n")) {
		var v struct {
			Name            string
			EType           int32
			Key, PDU, Plain string
			FromClient      bool `json:"from_client"`
			Level           int
			HeaderSign      bool `json:"header_sign"`
			StubOff         int  `json:"stub_off"`
			TrailerOff      int  `json:"trailer_off"`
		}
		if err := json.Unmarshal(line, &v); err != nil {
			t.Fatal(err)
		}
		key := types.EncryptionKey{KeyType: v.EType, KeyValue: krbHex(t, v.Key)}
		pdu, plain := krbHex(t, v.PDU), krbHex(t, v.Plain)
		c := testContext(key)
		auth := pdu[v.TrailerOff+8:]
		switch v.Level {
		case testLevelPrivacy:
			if err := c.Unseal(v.FromClient, pdu, pdu[v.StubOff:v.TrailerOff], auth); err != nil {
				t.Errorf("%s: %v", v.Name, err)
				continue
			}
		case testLevelIntegrity:
			if err := c.Verify(v.FromClient, pdu, auth); err != nil {
				t.Errorf("%s: %v", v.Name, err)
				continue
			}
		}
		if !bytes.Equal(pdu[v.StubOff:v.TrailerOff], plain) {
			t.Errorf("%s: plaintext differs", v.Name)
		}
		if want := map[bool]int8{true: 1, false: -1}[v.HeaderSign]; c.headerSign != want {
			t.Errorf("%s: header signing learnt as %d", v.Name, c.headerSign)
		}
		n++
	}
	if n < 40 {
		t.Errorf("only %d vectors", n)
	}
}

func krbHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// BenchmarkKerberosUnseal: one 4 KiB sealed request (a large
// SchRpcRegisterTask) per op, AES256 and RC4, header signing learnt.
func BenchmarkKerberosUnseal(b *testing.B) {
	for _, etype := range []int32{KerberosETypeAES256, KerberosETypeRC4} {
		b.Run(KerberosETypeName(etype), func(b *testing.B) {
			key, _ := types.GenerateEncryptionKey(must(krbEType(etype)))
			sealed, so, to := sealPDU(b, key, false, true, true, testLevelPrivacy, 1, bytes.Repeat([]byte("x"), 4096))
			c := testContext(key)
			pdu := append([]byte(nil), sealed...)
			if err := c.Unseal(true, pdu, pdu[so:to], pdu[to+8:]); err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(sealed)))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				copy(pdu, sealed)
				if err := c.Unseal(true, pdu, pdu[so:to], pdu[to+8:]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkOpenAPReq: opening one AES256 ticket with the right key first,
// and behind 100 wrong keys of the same type.
func BenchmarkOpenAPReq(b *testing.B) {
	kt, file := testKeytab(b, 2, 2, KerberosETypeAES256)
	m := mintAPReq(b, kt, testSPN, 2, KerberosETypeAES256, GSSFlagDCEStyle, true)
	right := keysFromKeytab(b, file)
	var crowded KerberosKeys
	for i := 0; i < 100; i++ {
		// Same principal and kvno: these are tried before the right key.
		crowded.Add(must(NewKerberosKey(testSPN, testRealm, 2, KerberosETypeAES256, bytes.Repeat([]byte{byte(i)}, 32))))
	}
	crowded.Add(right.Keys()[0])
	for name, ks := range map[string]*KerberosKeys{"first": right, "behind100": &crowded} {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if _, err := OpenAPReq(m.raw, ks); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
