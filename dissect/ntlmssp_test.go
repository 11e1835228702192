package dissect

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"testing"
)

func ntlmHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("bad test hex: %v", err)
	}
	return b
}

func mustNTLM(t testing.TB, blobHex string) *NTLMMessage {
	t.Helper()
	tok := FindNTLMSSP(ntlmHex(t, blobHex))
	if tok == nil {
		t.Fatal("FindNTLMSSP found no token")
	}
	m, err := ParseNTLMSSP(tok)
	if err != nil {
		t.Fatalf("ParseNTLMSSP: %v", err)
	}
	return m
}

func TestParseNTLMSSPNegotiate(t *testing.T) {
	// atexec frame 8: a bare 32-byte NEGOTIATE, flags as tshark shows them.
	m := mustNTLM(t, hexAtexecNegotiateSPNEGO)
	if m.Type != NTLMNegotiate || m.Flags != 0xe0888235 {
		t.Errorf("type %d flags %#x, want 1 0xe0888235", m.Type, m.Flags)
	}
	if m.Domain != "" || m.Workstation != "" {
		t.Errorf("domain %q workstation %q, want none supplied", m.Domain, m.Workstation)
	}
	// zeek raw_ntlm frame 19: 40 bytes with a Version (6.1 build 7600; this
	// client puts the revision byte where Reserved starts).
	m = mustNTLM(t, hexRawNTLMNegotiate)
	if m.Type != NTLMNegotiate || m.Flags != 0x62880205 {
		t.Errorf("type %d flags %#x, want 1 0x62880205", m.Type, m.Flags)
	}
	if m.Version != [8]byte{6, 1, 0xb0, 0x1d, 0x0f, 0, 0, 0} {
		t.Errorf("version % x", m.Version)
	}
}

func TestParseNTLMSSPNegotiateSuppliedNames(t *testing.T) {
	// MS-NLMP 2.2.1.1 with both OEM_*_SUPPLIED flags: payload after Version.
	b := append([]byte(nil), ntlmSignature...)
	b = binary.LittleEndian.AppendUint32(b, NTLMNegotiate)
	b = binary.LittleEndian.AppendUint32(b, NTLMFlagOEMDomainSupplied|NTLMFlagOEMWorkstationSupplied|NTLMFlagVersion)
	b = append(b, 3, 0, 3, 0, 40, 0, 0, 0) // "LAB" at 40
	b = append(b, 4, 0, 4, 0, 43, 0, 0, 0) // "WS01" at 43
	b = append(b, 10, 0, 0x61, 0x4a, 0, 0, 0, 15)
	b = append(b, "LABWS01"...)
	m, err := ParseNTLMSSP(b)
	if err != nil {
		t.Fatal(err)
	}
	if m.Domain != "LAB" || m.Workstation != "WS01" {
		t.Errorf("domain %q workstation %q", m.Domain, m.Workstation)
	}
	// The same message with the workstation pointing one byte too far.
	b[28] = 44
	if _, err := ParseNTLMSSP(b); !errors.Is(err, ErrTruncated) {
		t.Errorf("workstation past the end: err %v, want ErrTruncated", err)
	}
}

func TestParseNTLMSSPChallenge(t *testing.T) {
	tests := []struct {
		name, hex                                            string
		flags                                                uint32
		challenge                                            string
		target, nbComputer, nbDomain, dnsComputer, dnsDomain string
	}{
		{"atexec frame 9", hexAtexecChallengeSPNEGO, 0xe2898235, "474acecc112658a0",
			"LOCAL", "2008-DC01", "LOCAL", "2008-DC01.local.com", "local.com"},
		{"raw_ntlm frame 20", hexRawNTLMChallenge, 0x628a0205, "ccc0bad0f47e17f0",
			"TEST-F7DFBC3FE9", "TEST-F7DFBC3FE9", "TEST-F7DFBC3FE9", "test-f7dfbc3fe9", "test-f7dfbc3fe9"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := mustNTLM(t, tt.hex)
			if m.Type != NTLMChallenge || m.Flags != tt.flags {
				t.Errorf("type %d flags %#x, want 2 %#x", m.Type, m.Flags, tt.flags)
			}
			if got := hex.EncodeToString(m.ServerChallenge[:]); got != tt.challenge {
				t.Errorf("challenge %s, want %s", got, tt.challenge)
			}
			got := []string{m.TargetName, m.NbComputer, m.NbDomain, m.DNSComputer, m.DNSDomain}
			want := []string{tt.target, tt.nbComputer, tt.nbDomain, tt.dnsComputer, tt.dnsDomain}
			for i := range got {
				if got[i] != want[i] {
					t.Errorf("names %q, want %q", got, want)
					break
				}
			}
			if len(m.TargetInfo) == 0 || binary.LittleEndian.Uint16(m.TargetInfo[len(m.TargetInfo)-4:]) != avEOL {
				t.Errorf("TargetInfo does not end with MsvAvEOL: % x", m.TargetInfo)
			}
		})
	}
}

func TestParseNTLMSSPAuthenticate(t *testing.T) {
	tests := []struct {
		name, hex                 string
		domain, user, workstation string
		ntProofStr, sessionKey    string
		mic                       bool
	}{
		// Impacket puts the payload at offset 64: no Version, no MIC.
		{"atexec frame 10", hexAtexecAuthSPNEGO, "", "administrator", "",
			"88c68ec69356ca69fb901621cdf3e151", "ab9ec5b553ca3f24de2f047390351ff6", false},
		{"raw_ntlm frame 22", hexRawNTLMAuth, "TEST-F7DFBC3FE9", "test", "BABYBOOK",
			"020a2c94cbf8d66168d1b93068775845", "eb729686fcaacfadb13418fa494760de", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := mustNTLM(t, tt.hex)
			if m.Type != NTLMAuthenticate {
				t.Fatalf("type %d", m.Type)
			}
			if m.Domain != tt.domain || m.User != tt.user || m.Workstation != tt.workstation {
				t.Errorf("%q\\%q@%q, want %q\\%q@%q", m.Domain, m.User, m.Workstation, tt.domain, tt.user, tt.workstation)
			}
			if !m.NTLMv2() || len(m.LMResponse) != 24 {
				t.Errorf("NTLMv2 %v, LM %d bytes", m.NTLMv2(), len(m.LMResponse))
			}
			if got := hex.EncodeToString(m.NTResponse[:16]); got != tt.ntProofStr {
				t.Errorf("NTProofStr %s, want %s", got, tt.ntProofStr)
			}
			if got := hex.EncodeToString(m.EncryptedRandomSessionKey); got != tt.sessionKey {
				t.Errorf("session key %s, want %s", got, tt.sessionKey)
			}
			if (m.MIC != nil) != tt.mic {
				t.Errorf("MIC % x, want present=%v", m.MIC, tt.mic)
			}
			if m.Anonymous {
				t.Error("Anonymous set on a named user")
			}
		})
	}
}

func TestParseNTLMSSPAnonymous(t *testing.T) {
	// MS-NLMP 3.2.5.1.2 anonymous: empty names, LM Z(1), empty NT.
	b := append([]byte(nil), ntlmSignature...)
	b = binary.LittleEndian.AppendUint32(b, NTLMAuthenticate)
	b = append(b, 1, 0, 1, 0, 64, 0, 0, 0) // LM: one zero byte at 64
	for range 5 {
		b = append(b, 0, 0, 0, 0, 65, 0, 0, 0)
	}
	b = binary.LittleEndian.AppendUint32(b, NTLMFlagUnicode|NTLMFlagAnonymous)
	b = append(b, 0)
	m, err := ParseNTLMSSP(b)
	if err != nil {
		t.Fatal(err)
	}
	if !m.Anonymous || m.NTLMv2() || m.MIC != nil {
		t.Errorf("anonymous %v v2 %v mic %v", m.Anonymous, m.NTLMv2(), m.MIC)
	}
}

func TestParseNTLMSSPRejects(t *testing.T) {
	auth := FindNTLMSSP(ntlmHex(t, hexRawNTLMAuth))
	bad := func(mut func([]byte) []byte) []byte { return mut(append([]byte(nil), auth...)) }
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, ErrTruncated},
		{"signature", bad(func(b []byte) []byte { b[0] = 'n'; return b }), ErrMalformed},
		{"type 4", bad(func(b []byte) []byte { b[8] = 4; return b }), ErrMalformed},
		{"header cut", auth[:40], ErrTruncated},
		{"NT response offset past end", bad(func(b []byte) []byte { b[24], b[25] = 0xff, 0xff; return b }), ErrTruncated},
		{"NT response offset overflow", bad(func(b []byte) []byte {
			binary.LittleEndian.PutUint32(b[24:], 0xffffffff)
			return b
		}), ErrTruncated},
		{"payload cut", auth[:len(auth)-1], ErrTruncated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := ParseNTLMSSP(tt.in)
			if !errors.Is(err, tt.want) || m != nil {
				t.Fatalf("got %v, %v; want %v", m, err, tt.want)
			}
			var de *Error
			if !errors.As(err, &de) || de.Layer != layerNTLMSSP {
				t.Errorf("error %v is not a dissect.Error of layer ntlmssp", err)
			}
		})
	}
}

func TestParseNTLMSSPAVPairLimit(t *testing.T) {
	ch := append([]byte(nil), FindNTLMSSP(ntlmHex(t, hexRawNTLMChallenge))...)
	ti := bytes.Repeat([]byte{9, 0, 0, 0}, MaxNTLMAVPairs+1) // empty MsvAvTargetName pairs
	binary.LittleEndian.PutUint16(ch[40:], uint16(len(ti)))
	binary.LittleEndian.PutUint32(ch[44:], uint32(len(ch)))
	ch = append(ch, ti...)
	if _, err := ParseNTLMSSP(ch); !errors.Is(err, ErrLimit) {
		t.Errorf("err %v, want ErrLimit", err)
	}
}

// Every prefix of every real message either parses or fails with an
// *Error; none panics or reads past its input.
func TestParseNTLMSSPPrefixes(t *testing.T) {
	for _, h := range []string{hexAtexecNegotiateSPNEGO, hexAtexecChallengeSPNEGO, hexAtexecAuthSPNEGO,
		hexRawNTLMNegotiate, hexRawNTLMChallenge, hexRawNTLMAuth} {
		tok := FindNTLMSSP(ntlmHex(t, h))
		for n := range len(tok) {
			in := append([]byte(nil), tok[:n]...) // exact capacity: overreads would panic
			if _, err := ParseNTLMSSP(in); err != nil {
				var de *Error
				if !errors.As(err, &de) {
					t.Fatalf("prefix %d: untyped error %v", n, err)
				}
			}
		}
	}
}

func BenchmarkParseNTLMSSPAuthenticate(b *testing.B) {
	tok := FindNTLMSSP(ntlmHex(b, hexAtexecAuthSPNEGO))
	b.ReportAllocs()
	b.SetBytes(int64(len(tok)))
	for b.Loop() {
		if _, err := ParseNTLMSSP(tok); err != nil {
			b.Fatal(err)
		}
	}
}
