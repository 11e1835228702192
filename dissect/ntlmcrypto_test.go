package dissect

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

// MS-NLMP 4.2.1 common values.
var (
	nlmpServerChallenge = [8]byte{0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef}
	nlmpRandomKey       = bytes.Repeat([]byte{0x55}, 16)
	nlmpPlaintext       = ntlmUTF16LE("Plaintext")
	nlmpCred            = func() Credential {
		c, err := ParseCredentials([]byte(`Domain\User:Password`))
		if err != nil {
			panic(err)
		}
		return c.Lookup("Domain", "User")[0]
	}()
)

func hexArr16(t *testing.T, s string) [16]byte {
	var a [16]byte
	copy(a[:], ntlmHex(t, s))
	return a
}

// nlmpPDU lays a sealed message out as Unseal expects: the message then
// the 16-byte signature, as in a DCE-RPC PDU whose header is empty.
func nlmpPDU(t *testing.T, sealedHex, sigHex string) (pdu, stub, sig []byte) {
	sealed := ntlmHex(t, sealedHex)
	sig = ntlmHex(t, sigHex)
	pdu = append(append([]byte(nil), sealed...), sig...)
	return pdu, pdu[:len(sealed)], sig
}

func TestNTLMHashes(t *testing.T) {
	// MS-NLMP 4.2.2.1.1 LMOWFv1, 4.2.2.1.2 NTOWFv1, 4.2.4.1.1 NTOWFv2.
	if got := hex.EncodeToString(nlmpCred.NTHash[:]); got != "a4f49c406510bdcab6824ee7c30fd852" {
		t.Errorf("NTOWFv1 %s", got)
	}
	if got := hex.EncodeToString(nlmpCred.LMHash[:]); !nlmpCred.HasLMHash || got != "e52cac67419a9a224a3b108f3fa6cb6d" {
		t.Errorf("LMOWFv1 %s (known %v)", got, nlmpCred.HasLMHash)
	}
	v2 := ntowfv2(nlmpCred.NTHash, "User", "Domain")
	if got := hex.EncodeToString(v2[:]); got != "0c868a403bfd7a93a3001ef22ef02e3f" {
		t.Errorf("NTOWFv2 %s", got)
	}
}

// MS-NLMP 4.2.2: NTLMv1 without extended session security, KEY_EXCH.
func TestNTLMSessionV1(t *testing.T) {
	const flags = 0xe2028233
	ch := &NTLMMessage{Type: NTLMChallenge, Flags: flags, ServerChallenge: nlmpServerChallenge}
	au := &NTLMMessage{Type: NTLMAuthenticate, Flags: flags, User: "User", Domain: "Domain",
		LMResponse:                ntlmHex(t, "98def7b87f88aa5dafe2df779688a172def11c7d5ccdef13"), // 4.2.2.2.2
		NTResponse:                ntlmHex(t, "67c43011f30298a2ad35ece64f16331c44bdbed927841f94"), // 4.2.2.2.1
		EncryptedRandomSessionKey: ntlmHex(t, "518822b1b3f350c8958682ecbb3e3cb7"),                 // 4.2.2.2.3
	}
	s, err := NewNTLMSession(nil, ch, au, nlmpCred)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(s.SessionKey(), nlmpRandomKey) {
		t.Fatalf("exported session key %x", s.SessionKey())
	}
	// 4.2.2.4 GSS_WrapEx: SEAL of "Plaintext" with the shared handle.
	pdu, stub, sig := nlmpPDU(t, "56fe04d861f9319af0d7238a2e3b4d457fb8", "010000000000000009dcd1df2e459d36")
	if err := s.Unseal(true, pdu, stub, sig); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(stub, nlmpPlaintext) {
		t.Errorf("unsealed % x", stub)
	}

	// The wrong password is caught by the NT response.
	bad := nlmpCred
	bad.NTHash = NTHashFromPassword("password")
	if _, err := NewNTLMSession(nil, ch, au, bad); !errors.Is(err, ErrWrongKey) {
		t.Errorf("wrong password: %v", err)
	}
}

// MS-NLMP 4.2.2.2.3 encrypted session keys with NON_NT_SESSION_KEY and
// LM_KEY: KXKEY variants that need the LM hash.
func TestNTLMKXKeyV1LM(t *testing.T) {
	lm := ntlmHex(t, "98def7b87f88aa5dafe2df779688a172def11c7d5ccdef13")
	sbk := hexArr16(t, "d87262b0cde4b1cb7499becccdf10784") // 4.2.2.1.3
	for _, tt := range []struct {
		flags uint32
		want  string
	}{
		{0xe2028233, "518822b1b3f350c8958682ecbb3e3cb7"},
		{0xe2028233 | NTLMFlagRequestNonNTSessionKey, "7452ca55c225a1ca04b48fae32cf56fc"},
		{0xe2028233 | NTLMFlagLMKey, "4cd7bb57d697ef9b549f02b8f9b37864"},
	} {
		kx, err := kxkeyV1(tt.flags, sbk, nlmpServerChallenge, lm, nlmpCred)
		if err != nil {
			t.Fatal(err)
		}
		enc := append([]byte(nil), nlmpRandomKey...)
		ntlmRC4XOR(kx[:], enc)
		if got := hex.EncodeToString(enc); got != tt.want {
			t.Errorf("flags %#x: encrypted session key %s, want %s", tt.flags, got, tt.want)
		}
	}
	noLM := nlmpCred
	noLM.HasLMHash = false
	if _, err := kxkeyV1(NTLMFlagLMKey, sbk, nlmpServerChallenge, lm, noLM); err == nil {
		t.Error("LM_KEY without an LM hash accepted")
	}
}

// MS-NLMP 4.2.3: NTLMv1 with client challenge (extended session security),
// 56-bit, no KEY_EXCH.
func TestNTLMSessionV1ESS(t *testing.T) {
	const flags = 0x820a8233
	ch := &NTLMMessage{Type: NTLMChallenge, Flags: flags, ServerChallenge: nlmpServerChallenge}
	au := &NTLMMessage{Type: NTLMAuthenticate, Flags: flags, User: "User", Domain: "Domain",
		LMResponse: ntlmHex(t, "aaaaaaaaaaaaaaaa00000000000000000000000000000000"), // 4.2.3.2.1
		NTResponse: ntlmHex(t, "7537f803ae367128ca458204bde7caf81e97ed2683267232"), // 4.2.3.2.2
	}
	s, err := NewNTLMSession(nil, ch, au, nlmpCred)
	if err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(s.SessionKey()); got != "eb93429a8bd952f8b89c55b87f475edc" { // 4.2.3.1.3
		t.Fatalf("key exchange key %s", got)
	}
	// 4.2.3.4 GSS_WrapEx.
	pdu, stub, sig := nlmpPDU(t, "a02372f6530273f3aa1eb90190ce5200c99d", "01000000ff2aeb52f681793a00000000")
	if err := s.Unseal(true, pdu, stub, sig); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(stub, nlmpPlaintext) {
		t.Errorf("unsealed % x", stub)
	}
}

// MS-NLMP 4.2.4: NTLMv2.
func nlmpV2Messages(t *testing.T) (*NTLMMessage, *NTLMMessage) {
	const flags = 0xe28a8233
	// 4.2.4.1.3 temp: header, zero time, ClientChallenge, AV pairs
	// (MsvAvNbDomainName "Domain", MsvAvNbComputerName "Server", EOL).
	temp := ntlmHex(t, "0101000000000000"+"0000000000000000"+"aaaaaaaaaaaaaaaa"+"00000000"+
		"02000c00"+hex.EncodeToString(ntlmUTF16LE("Domain"))+"01000c00"+hex.EncodeToString(ntlmUTF16LE("Server"))+"00000000"+
		"00000000")
	ch := &NTLMMessage{Type: NTLMChallenge, Flags: flags, ServerChallenge: nlmpServerChallenge}
	au := &NTLMMessage{Type: NTLMAuthenticate, Flags: flags, User: "User", Domain: "Domain",
		LMResponse:                ntlmHex(t, "86c35097ac9cec102554764a57cccc19aaaaaaaaaaaaaaaa"),  // 4.2.4.2.1
		NTResponse:                append(ntlmHex(t, "68cd0ab851e51c96aabc927bebef6a1c"), temp...), // 4.2.4.2.2
		EncryptedRandomSessionKey: ntlmHex(t, "c5dad2544fc9799094ce1ce90bc9d03e"),                  // 4.2.4.2.3
	}
	return ch, au
}

func TestNTLMSessionV2(t *testing.T) {
	ch, au := nlmpV2Messages(t)
	s, err := NewNTLMSession(nil, ch, au, nlmpCred)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(s.SessionKey(), nlmpRandomKey) {
		t.Fatalf("exported session key %x", s.SessionKey())
	}
	// 4.2.4.4 SEALKEY and SIGNKEY.
	if got := hex.EncodeToString(s.clientSign[:]); got != "4788dc861b4782f35d43fd98fe1a2d39" {
		t.Errorf("client signing key %s", got)
	}
	// 4.2.4.4 GSS_WrapEx: the RC4 handle seals the message, then encrypts
	// the checksum.
	pdu, stub, sig := nlmpPDU(t, "54e50165bf1936dc996020c1811b0f06fb5f", "010000007fb38ec5c55d497600000000")
	if err := s.Unseal(true, pdu, stub, sig); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(stub, nlmpPlaintext) {
		t.Errorf("unsealed % x", stub)
	}
}

func TestNTLMSessionV2WrongKey(t *testing.T) {
	ch, au := nlmpV2Messages(t)
	for _, mut := range []func(*Credential, *NTLMMessage){
		func(c *Credential, _ *NTLMMessage) { c.NTHash[0] ^= 1 },
		func(_ *Credential, a *NTLMMessage) { a.User = "Other" },
		func(_ *Credential, a *NTLMMessage) { a.Domain = "DOMAIN" }, // only the user is upper-cased
	} {
		c, a := nlmpCred, *au
		mut(&c, &a)
		if _, err := NewNTLMSession(nil, ch, &a, c); !errors.Is(err, ErrWrongKey) {
			t.Errorf("err %v, want ErrWrongKey", err)
		}
	}
	// The user name is case-insensitive.
	a := *au
	a.User = "USER"
	if _, err := NewNTLMSession(nil, ch, &a, nlmpCred); err != nil {
		t.Errorf("upper-case user: %v", err)
	}
}

// Sealing state runs per direction and in order: a second message from the
// client continues the client's RC4 stream and sequence number, and a
// signature replayed out of order fails.
func TestNTLMSessionV2Sequence(t *testing.T) {
	ch, au := nlmpV2Messages(t)
	mk := func() *NTLMSession {
		s, err := NewNTLMSession(nil, ch, au, nlmpCred)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	// Build a sealed exchange with the sender-side helper below.
	tx := mk()
	var pdus [][]byte
	for i, dir := range []bool{true, false, true, false} {
		p := []byte(strings.Repeat("header--", 2) + "stub data " + string(rune('A'+i)) + "....")
		pdus = append(pdus, tx.testSeal(dir, p, 16, len(p)))
	}
	rx := mk()
	for i, dir := range []bool{true, false, true, false} {
		p := append([]byte(nil), pdus[i]...)
		if err := rx.Unseal(dir, p, p[16:len(p)-16], p[len(p)-16:]); err != nil {
			t.Fatalf("PDU %d: %v", i, err)
		}
		if want := "stub data " + string(rune('A'+i)); !bytes.Contains(p, []byte(want)) {
			t.Errorf("PDU %d: %q", i, p)
		}
	}
	// Skipping the first client PDU desynchronises the client direction.
	rx = mk()
	p := append([]byte(nil), pdus[2]...)
	if err := rx.Unseal(true, p, p[16:len(p)-16], p[len(p)-16:]); !errors.Is(err, ErrBadSignature) {
		t.Errorf("out-of-order PDU: %v", err)
	}
	// A flipped ciphertext bit fails the signature.
	rx = mk()
	p = append([]byte(nil), pdus[0]...)
	p[20] ^= 0x40
	if err := rx.Unseal(true, p, p[16:len(p)-16], p[len(p)-16:]); !errors.Is(err, ErrBadSignature) {
		t.Errorf("tampered PDU: %v", err)
	}
}

// testSeal is the sender side of Unseal (MS-NLMP 3.4.3 SEAL), for tests:
// it encrypts pdu[from:to] and appends the signature.
func (s *NTLMSession) testSeal(fromClient bool, pdu []byte, from, to int) []byte {
	key, seq := &s.serverSign, &s.serverSeq
	if fromClient {
		key, seq = &s.clientSign, &s.clientSeq
	}
	plain := append([]byte(nil), pdu...)
	s.handle(fromClient).XORKeyStream(pdu[from:to], pdu[from:to])
	sig := make([]byte, 16)
	sig[0] = 1
	check := ntlmHMACMD5(key[:], ntlmLE32(*seq), plain)[:8]
	if s.keyExch {
		s.handle(fromClient).XORKeyStream(check, check)
	}
	copy(sig[4:], check)
	copy(sig[12:], ntlmLE32(*seq))
	*seq++
	return append(pdu, sig...)
}

func TestNTLMVerifyIntegrity(t *testing.T) {
	ch, au := nlmpV2Messages(t)
	tx, _ := NewNTLMSession(nil, ch, au, nlmpCred)
	rx, _ := NewNTLMSession(nil, ch, au, nlmpCred)
	p := []byte("0123456789abcdef signed only")
	signed := tx.testSeal(false, append([]byte(nil), p...), 0, 0)
	if err := rx.Verify(false, signed, signed[len(signed)-16:]); err != nil {
		t.Fatal(err)
	}
	if err := rx.Verify(false, signed, signed[len(signed)-16:]); !errors.Is(err, ErrBadSignature) {
		t.Errorf("replay: %v", err)
	}
}

func TestNTLMSessionRejects(t *testing.T) {
	ch, au := nlmpV2Messages(t)
	anon := &NTLMMessage{Type: NTLMAuthenticate, Anonymous: true}
	short := *au
	short.NTResponse = au.NTResponse[:30]
	noKey := *au
	noKey.EncryptedRandomSessionKey = nil
	for name, tc := range map[string][2]*NTLMMessage{
		"nil challenge":   {nil, au},
		"swapped":         {au, ch},
		"anonymous":       {ch, anon},
		"short NTLMv2":    {ch, &short},
		"KEY_EXCH no key": {ch, &noKey},
	} {
		if s, err := NewNTLMSession(nil, tc[0], tc[1], nlmpCred); err == nil || s != nil {
			t.Errorf("%s: accepted", name)
		}
	}
	s, _ := NewNTLMSession(nil, ch, au, nlmpCred)
	if err := s.Unseal(true, make([]byte, 10), nil, make([]byte, 16)); !errors.Is(err, ErrMalformed) {
		t.Errorf("short PDU: %v", err)
	}
}

// sealedAuthValue returns the auth_value of a DCE-RPC PDU (little-endian
// drep): its last auth_length bytes.
func sealedAuthValue(t *testing.T, pdu []byte) []byte {
	t.Helper()
	n := int(pdu[10]) | int(pdu[11])<<8
	return pdu[len(pdu)-n:]
}

// End to end on atexec-sealed-dev.pcap: the bind's three NTLM messages and
// the password give the session key the JSON records, and every sealed
// request and response unseals to the stub whose SHA-256 it records, with
// the signature verified, in capture order on both directions.
func TestNTLMSessionAtexecSealed(t *testing.T) {
	var msgs [3]*NTLMMessage
	for i, h := range []string{hexSealedBind, hexSealedBindAck, hexSealedAuth3} {
		m, err := ParseNTLMSSP(FindNTLMSSP(sealedAuthValue(t, ntlmHex(t, h))))
		if err != nil {
			t.Fatalf("message %d: %v", i+1, err)
		}
		msgs[i] = m
	}
	if msgs[2].Domain != "LAB" || msgs[2].User != "analyst" || msgs[2].Flags != 0xe0888235 {
		t.Fatalf("AUTHENTICATE %q\\%q flags %#x", msgs[2].Domain, msgs[2].User, msgs[2].Flags)
	}
	creds, err := ParseCredentials([]byte("# lab\nLAB\\analyst:Tsch-Dev-2026!\n"))
	if err != nil {
		t.Fatal(err)
	}
	cands := creds.Lookup(msgs[2].Domain, msgs[2].User)
	if len(cands) != 1 {
		t.Fatalf("%d candidates", len(cands))
	}
	if got := hex.EncodeToString(cands[0].NTHash[:]); got != "ebd03ff0acf8be8a1d1bf15943dcd154" {
		t.Errorf("nt_hash %s", got)
	}
	s, err := NewNTLMSession(msgs[0], msgs[1], msgs[2], cands[0])
	if err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(s.SessionKey()); got != "6f396153615564757162346177646946" {
		t.Fatalf("exported session key %s", got)
	}
	for i, call := range hexSealedCalls {
		for dir, h := range call {
			pdu := ntlmHex(t, h)
			sig := pdu[len(pdu)-16:]
			padLen := int(pdu[len(pdu)-16-8+2])
			stub := pdu[24 : len(pdu)-16-8]
			if err := s.Unseal(dir == 0, pdu, stub, sig); err != nil {
				t.Fatalf("call %d dir %d: %v", i, dir, err)
			}
			sum := sha256.Sum256(stub[:len(stub)-padLen])
			if got := hex.EncodeToString(sum[:]); got != sealedStubSHA256[i][dir] {
				t.Errorf("call %d dir %d: stub sha256 %s, want %s", i, dir, got, sealedStubSHA256[i][dir])
			}
		}
	}
	// The register request carries the task XML in UTF-16LE.
	pdu := ntlmHex(t, hexSealedCalls[0][0])
	if bytes.Contains(pdu, ntlmUTF16LE("<Command>cmd.exe</Command>")) {
		t.Error("sealed PDU holds the plaintext")
	}
	s2, _ := NewNTLMSession(nil, msgs[1], msgs[2], cands[0])
	if err := s2.Unseal(true, pdu, pdu[24:len(pdu)-24], pdu[len(pdu)-16:]); err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(pdu, ntlmUTF16LE("<Command>cmd.exe</Command>")) {
		t.Error("task XML not found in the unsealed stub")
	}
}

func BenchmarkNTLMUnseal(b *testing.B) {
	var msgs [3]*NTLMMessage
	for i, h := range []string{hexSealedBind, hexSealedBindAck, hexSealedAuth3} {
		pdu := ntlmHex(b, h)
		n := int(pdu[10]) | int(pdu[11])<<8
		msgs[i], _ = ParseNTLMSSP(FindNTLMSSP(pdu[len(pdu)-n:]))
	}
	cred := Credential{User: "analyst", NTHash: NTHashFromPassword("Tsch-Dev-2026!")}
	pdu := ntlmHex(b, hexSealedCalls[0][0])
	b.ReportAllocs()
	b.SetBytes(int64(len(pdu)))
	for b.Loop() {
		// A fresh session each time: the RC4 stream is consumed by a PDU.
		s, err := NewNTLMSession(msgs[0], msgs[1], msgs[2], cred)
		if err != nil {
			b.Fatal(err)
		}
		p := append([]byte(nil), pdu...)
		if err := s.Unseal(true, p, p[24:len(p)-24], p[len(p)-16:]); err != nil {
			b.Fatal(err)
		}
	}
}
