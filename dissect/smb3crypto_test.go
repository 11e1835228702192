package dissect

import (
	"bytes"
	"crypto/aes"
	"crypto/sha512"
	"encoding/binary"
	"errors"
	"testing"
)

// RFC 3610 section 8, packet vectors #1-#3 (M = 8, L = 2, 13-byte nonce,
// 8 bytes of AAD).
func TestCCMRFC3610(t *testing.T) {
	key := ntlmHex(t, "c0c1c2c3c4c5c6c7c8c9cacbcccdcecf")
	block, _ := aes.NewCipher(key)
	c, err := newCCM(block, 13, 8)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ nonce, plain, sealed string }{
		{"00000003020100a0a1a2a3a4a5", "08090a0b0c0d0e0f101112131415161718191a1b1c1d1e",
			"588c979a61c663d2f066d0c2c0f989806d5f6b61dac38417e8d12cfdf926e0"},
		{"00000004030201a0a1a2a3a4a5", "08090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
			"72c91a36e135f8cf291ca894085c87e3cc15c439c9e43a3ba091d56e10400916"},
		{"00000005040302a0a1a2a3a4a5", "08090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20",
			"51b1e5f44a197d1da46b0f8e2d282ae871e838bb64da8596574adaa76fbd9fb0c5"},
	} {
		nonce, plain, sealed := ntlmHex(t, tt.nonce), ntlmHex(t, tt.plain), ntlmHex(t, tt.sealed)
		aad := ntlmHex(t, "0001020304050607")
		if got := c.Seal(nil, nonce, plain, aad); !bytes.Equal(got, sealed) {
			t.Errorf("seal %x\nwant %x", got, sealed)
		}
		got, err := c.Open(nil, nonce, sealed, aad)
		if err != nil || !bytes.Equal(got, plain) {
			t.Errorf("open: %x, %v", got, err)
		}
		for i := range sealed {
			bad := append([]byte(nil), sealed...)
			bad[i] ^= 0x01
			if _, err := c.Open(nil, nonce, bad, aad); err == nil {
				t.Fatalf("bit flip at %d accepted", i)
			}
		}
	}
}

// CCM as SMB3 uses it (11-byte nonce, 16-byte tag) round-trips for every
// length around block boundaries, with and without AAD, in place.
func TestCCMRoundTrip(t *testing.T) {
	block, _ := aes.NewCipher(bytes.Repeat([]byte{7}, 32))
	c, _ := newCCM(block, 11, 16)
	nonce := bytes.Repeat([]byte{9}, 11)
	for n := 0; n < 70; n++ {
		plain := bytes.Repeat([]byte{byte(n)}, n)
		for _, aad := range [][]byte{nil, make([]byte, 32), make([]byte, 17)} {
			sealed := c.Seal(nil, nonce, plain, aad)
			got, err := c.Open(sealed[:0], nonce, sealed, aad)
			if err != nil || !bytes.Equal(got, plain) {
				t.Fatalf("n=%d aad=%d: %v", n, len(aad), err)
			}
		}
	}
	if _, err := newCCM(block, 14, 16); err == nil {
		t.Error("14-byte nonce accepted")
	}
}

// sealTransform builds a TRANSFORM_HEADER message the way a sender does
// (MS-SMB2 3.1.4.3), for tests.
func sealTransform(t testing.TB, key []byte, cipherID uint16, sessionID uint64, plain []byte) []byte {
	t.Helper()
	aead, nonceLen, err := smb3AEAD(key, cipherID)
	if err != nil {
		t.Fatal(err)
	}
	hdr := make([]byte, smb3TransformHeaderLen)
	copy(hdr, "\xfdSMB")
	for i := range nonceLen {
		hdr[20+i] = byte(0x30 + i)
	}
	binary.LittleEndian.PutUint32(hdr[36:], uint32(len(plain)))
	binary.LittleEndian.PutUint16(hdr[42:], 1)
	binary.LittleEndian.PutUint64(hdr[44:], sessionID)
	sealed := aead.Seal(nil, hdr[20:20+nonceLen], plain, hdr[20:])
	copy(hdr[4:20], sealed[len(plain):])
	return append(hdr, sealed[:len(plain)]...)
}

func TestDecryptTransform(t *testing.T) {
	var pre PreauthHash
	pre.Update([]byte("negotiate request"))
	pre.Update([]byte("negotiate response"))
	session := pre // the session hash forks from the connection hash
	session.Update([]byte("session setup request"))
	plain := append([]byte("\xfeSMB"), bytes.Repeat([]byte("tree connect "), 9)...)
	sessionKey := ntlmHex(t, "6f396153615564757162346177646946")
	for _, tt := range []struct {
		dialect, cipher uint16
	}{
		{SMB2Dialect300, 0}, {SMB2Dialect302, SMB3CipherAES128CCM},
		{SMB2Dialect311, SMB3CipherAES128CCM}, {SMB2Dialect311, SMB3CipherAES128GCM},
		{SMB2Dialect311, SMB3CipherAES256CCM}, {SMB2Dialect311, SMB3CipherAES256GCM},
	} {
		keys, err := DeriveSMB3Keys(sessionKey, tt.dialect, tt.cipher, session.Sum())
		if err != nil {
			t.Fatalf("%#x/%d: %v", tt.dialect, tt.cipher, err)
		}
		if bytes.Equal(keys.C2S, keys.S2C) {
			t.Errorf("%#x/%d: same key both ways", tt.dialect, tt.cipher)
		}
		msg := sealTransform(t, keys.C2S, keys.Cipher, 0x1122334455667788, plain)
		got, err := DecryptTransform(keys, true, msg)
		if err != nil || !bytes.Equal(got, plain) {
			t.Fatalf("%#x/%d: %q, %v", tt.dialect, tt.cipher, got, err)
		}
		if _, err := DecryptTransform(keys, false, msg); !errors.Is(err, ErrSMB3Auth) {
			t.Errorf("%#x/%d: wrong direction: %v", tt.dialect, tt.cipher, err)
		}
		bad := append([]byte(nil), msg...)
		bad[44] ^= 1 // SessionId is in the AAD
		if _, err := DecryptTransform(keys, true, bad); !errors.Is(err, ErrSMB3Auth) {
			t.Errorf("%#x/%d: tampered AAD: %v", tt.dialect, tt.cipher, err)
		}
		if _, err := DecryptTransform(keys, true, msg[:len(msg)-1]); !errors.Is(err, ErrTruncated) {
			t.Errorf("%#x/%d: truncated: %v", tt.dialect, tt.cipher, err)
		}
	}
}

func TestDeriveSMB3Keys(t *testing.T) {
	key := ntlmHex(t, "6f396153615564757162346177646946")
	k300, _ := DeriveSMB3Keys(key, SMB2Dialect300, 0, nil)
	k302, _ := DeriveSMB3Keys(key, SMB2Dialect302, SMB3CipherAES128GCM, nil)
	if !bytes.Equal(k300.C2S, k302.C2S) || k302.Cipher != SMB3CipherAES128CCM {
		t.Error("3.0 and 3.0.2 derive differently, or 3.0.2 took a cipher")
	}
	// 128-bit ciphers use the first 16 bytes of a longer (Kerberos) key.
	long := append(append([]byte(nil), key...), bytes.Repeat([]byte{0xee}, 16)...)
	kl, _ := DeriveSMB3Keys(long, SMB2Dialect300, 0, nil)
	if !bytes.Equal(kl.C2S, k300.C2S) {
		t.Error("128-bit key derivation used more than 16 bytes of the session key")
	}
	var p PreauthHash
	a, _ := DeriveSMB3Keys(long, SMB2Dialect311, SMB3CipherAES256GCM, p.Sum())
	b, _ := DeriveSMB3Keys(key, SMB2Dialect311, SMB3CipherAES256GCM, p.Sum())
	if len(a.C2S) != 32 || bytes.Equal(a.C2S, b.C2S) {
		t.Error("256-bit keys do not use the full session key")
	}
	p.Update([]byte{1})
	c, _ := DeriveSMB3Keys(key, SMB2Dialect311, SMB3CipherAES256GCM, p.Sum())
	if bytes.Equal(b.C2S, c.C2S) {
		t.Error("preauth hash ignored")
	}
	for _, bad := range []struct {
		key             []byte
		dialect, cipher uint16
		pre             []byte
	}{
		{nil, SMB2Dialect300, 0, nil},
		{key, 0x0210, 0, nil},
		{key, SMB2Dialect311, SMB3CipherAES128GCM, nil},
		{key, SMB2Dialect311, 9, p.Sum()},
	} {
		if _, err := DeriveSMB3Keys(bad.key, bad.dialect, bad.cipher, bad.pre); err == nil {
			t.Errorf("accepted %+v", bad)
		}
	}
}

func TestPreauthHash(t *testing.T) {
	var p PreauthHash
	if !bytes.Equal(p.Sum(), make([]byte, 64)) {
		t.Fatal("initial hash not zero")
	}
	p.Update([]byte("a"))
	want := sha512.Sum512(append(make([]byte, 64), 'a'))
	if !bytes.Equal(p.Sum(), want[:]) {
		t.Error("first link wrong")
	}
	q := p
	p.Update([]byte("b"))
	q.Update([]byte("c"))
	if bytes.Equal(p.Sum(), q.Sum()) {
		t.Error("forks share state")
	}
}

func FuzzDecryptTransform(f *testing.F) {
	key := bytes.Repeat([]byte{0x42}, 16)
	keys, _ := DeriveSMB3Keys(key, SMB2Dialect300, 0, nil)
	f.Add(sealTransform(f, keys.C2S, SMB3CipherAES128CCM, 1, []byte("\xfeSMB hello")), uint16(1))
	keysG, _ := DeriveSMB3Keys(key, SMB2Dialect311, SMB3CipherAES128GCM, make([]byte, 64))
	f.Add(sealTransform(f, keysG.C2S, SMB3CipherAES128GCM, 1, []byte("\xfeSMB hello")), uint16(2))
	f.Fuzz(func(t *testing.T, msg []byte, cipherID uint16) {
		k := keys
		if cipherID == SMB3CipherAES128GCM {
			k = keysG
		}
		out, err := DecryptTransform(k, true, msg)
		if err != nil {
			return
		}
		if len(out) != int(binary.LittleEndian.Uint32(msg[36:])) {
			t.Fatalf("%d bytes out, header says %d", len(out), binary.LittleEndian.Uint32(msg[36:]))
		}
	})
}

func BenchmarkDecryptTransform(b *testing.B) {
	for _, id := range []uint16{SMB3CipherAES128CCM, SMB3CipherAES128GCM} {
		keys, _ := DeriveSMB3Keys(bytes.Repeat([]byte{1}, 16), SMB2Dialect311, id, make([]byte, 64))
		msg := sealTransform(b, keys.C2S, id, 1, make([]byte, 4096))
		b.Run(map[uint16]string{1: "ccm", 2: "gcm"}[id], func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(msg)))
			for b.Loop() {
				if _, err := DecryptTransform(keys, true, msg); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
