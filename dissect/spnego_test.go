package dissect

import (
	"bytes"
	"testing"
)

func TestFindNTLMSSP(t *testing.T) {
	tests := []struct {
		name    string
		blob    []byte
		wantLen int // 0: none
	}{
		{"atexec frame 8 NegTokenInit", ntlmHex(t, hexAtexecNegotiateSPNEGO), 32},
		{"atexec frame 9 NegTokenResp", ntlmHex(t, hexAtexecChallengeSPNEGO), 204},
		{"atexec frame 10 NegTokenResp", ntlmHex(t, hexAtexecAuthSPNEGO), 348},
		{"raw_ntlm frame 22 raw", ntlmHex(t, hexRawNTLMAuth), len(ntlmHex(t, hexRawNTLMAuth))},
		{"kerberos frame 10", ntlmHex(t, hexKerberosAPReq), 0},
		{"kerberos frame 12", ntlmHex(t, hexKerberosAPRep), 0},
		{"empty", nil, 0},
		{"garbage", []byte("NTLMSSP"), 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok := FindNTLMSSP(tt.blob)
			if len(tok) != tt.wantLen {
				t.Fatalf("token of %d bytes, want %d", len(tok), tt.wantLen)
			}
			if tok != nil && !bytes.HasPrefix(tok, ntlmSignature) {
				t.Errorf("token does not start with the signature: % x", tok[:8])
			}
		})
	}
}

// A GSS wrapper the DER parser refuses (outer length overstated, as a
// truncated capture would give) still yields its NTLMSSP message through
// the byte-search fallback.
func TestFindNTLMSSPFallback(t *testing.T) {
	blob := ntlmHex(t, hexAtexecNegotiateSPNEGO)
	blob[1] = 0x7f
	tok := FindNTLMSSP(blob)
	m, err := ParseNTLMSSP(tok)
	if err != nil || m.Type != NTLMNegotiate {
		t.Fatalf("fallback: %v, %+v", err, m)
	}
}

// DCE-RPC with auth type RPC_C_AUTHN_GSS_NEGOTIATE may wrap NTLM in a GSS
// InitialContextToken naming the NTLMSSP OID directly.
func TestFindNTLMSSPGSSWrapped(t *testing.T) {
	raw := FindNTLMSSP(ntlmHex(t, hexRawNTLMNegotiate))
	oid := []byte{0x06, 0x0a, 0x2b, 0x06, 0x01, 0x04, 0x01, 0x82, 0x37, 0x02, 0x02, 0x0a}
	blob := append([]byte{0x60, byte(len(oid) + len(raw))}, oid...)
	blob = append(blob, raw...)
	if tok := FindNTLMSSP(blob); !bytes.Equal(tok, raw) {
		t.Errorf("got % x", tok)
	}
}

func TestFindKerberos(t *testing.T) {
	ki := FindKerberos(ntlmHex(t, hexKerberosAPReq))
	if ki == nil || !ki.ServiceTicket || ki.Realm != "SRT-AD.LOCAL" || ki.SPN != "cifs/BLACKCLOVER-DC" {
		t.Errorf("AP-REQ: %+v, want SRT-AD.LOCAL cifs/BLACKCLOVER-DC", ki)
	}
	ki = FindKerberos(ntlmHex(t, hexKerberosAPRep))
	if ki == nil || ki.ServiceTicket || ki.Realm != "" {
		t.Errorf("AP-REP: %+v, want a Kerberos token without ticket", ki)
	}
	for _, h := range []string{hexAtexecNegotiateSPNEGO, hexAtexecChallengeSPNEGO, hexAtexecAuthSPNEGO, hexRawNTLMAuth} {
		if ki := FindKerberos(ntlmHex(t, h)); ki != nil {
			t.Errorf("NTLM blob taken for Kerberos: %+v", ki)
		}
	}
}

// The fallback finds the AP-REQ after the Kerberos OID when the SPNEGO
// wrapper is unparsable.
func TestFindKerberosFallback(t *testing.T) {
	blob := ntlmHex(t, hexKerberosAPReq)
	blob[0] = 0x30 // no longer a GSS InitialContextToken
	ki := FindKerberos(blob)
	if ki == nil || ki.SPN != "cifs/BLACKCLOVER-DC" {
		t.Errorf("got %+v", ki)
	}
}

func TestFindKerberosPrefixes(t *testing.T) {
	blob := ntlmHex(t, hexKerberosAPReq)
	for n := range len(blob) {
		in := append([]byte(nil), blob[:n]...)
		if ki := FindKerberos(in); ki != nil && ki.SPN != "" && ki.SPN != "cifs/BLACKCLOVER-DC" {
			t.Fatalf("prefix %d: invented SPN %q", n, ki.SPN)
		}
		_ = FindNTLMSSP(in)
	}
}
