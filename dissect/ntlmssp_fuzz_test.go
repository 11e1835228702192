package dissect

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
	"unicode/utf8"
)

var ntlmSeedHex = []string{hexAtexecNegotiateSPNEGO, hexAtexecChallengeSPNEGO, hexAtexecAuthSPNEGO,
	hexRawNTLMNegotiate, hexRawNTLMChallenge, hexRawNTLMAuth}

func FuzzParseNTLMSSP(f *testing.F) {
	for _, h := range ntlmSeedHex {
		f.Add(FindNTLMSSP(ntlmHex(f, h)))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseNTLMSSP(b)
		if err != nil {
			var de *Error
			if !errors.As(err, &de) || m != nil {
				t.Fatalf("error %v with message %v", err, m)
			}
			return
		}
		// Decoding is a pure function of the bytes.
		m2, err := ParseNTLMSSP(b)
		if err != nil || !reflect.DeepEqual(m, m2) {
			t.Fatalf("second parse differs: %v", err)
		}
		for _, s := range []string{m.Domain, m.User, m.Workstation, m.TargetName, m.NbComputer, m.DNSDomain} {
			if !utf8.ValidString(s) {
				t.Fatalf("invalid UTF-8 %q", s)
			}
		}
		for _, f := range [][]byte{m.LMResponse, m.NTResponse, m.EncryptedRandomSessionKey, m.TargetInfo, m.MIC} {
			if len(f) > len(b) {
				t.Fatalf("field of %d bytes from a %d-byte message", len(f), len(b))
			}
		}
	})
}

func FuzzFindNTLMSSP(f *testing.F) {
	for _, h := range append(ntlmSeedHex, hexKerberosAPRep) {
		f.Add(ntlmHex(f, h))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		tok := FindNTLMSSP(b)
		if tok == nil {
			return
		}
		if !bytes.HasPrefix(tok, ntlmSignature) || len(tok) > len(b) {
			t.Fatalf("token of %d bytes from %d: % x", len(tok), len(b), tok)
		}
		_, _ = ParseNTLMSSP(tok)
	})
}

func FuzzFindKerberos(f *testing.F) {
	f.Add(ntlmHex(f, hexKerberosAPReq))
	f.Add(ntlmHex(f, hexKerberosAPRep))
	f.Add(ntlmHex(f, hexAtexecNegotiateSPNEGO))
	f.Fuzz(func(t *testing.T, b []byte) {
		ki := FindKerberos(b)
		if ki == nil {
			return
		}
		if !utf8.ValidString(ki.Realm) || !utf8.ValidString(ki.SPN) {
			t.Fatalf("invalid UTF-8 in %+v", ki)
		}
		if !ki.ServiceTicket && (ki.Realm != "" || ki.SPN != "") {
			t.Fatalf("names without a ticket: %+v", ki)
		}
		if ki2 := FindKerberos(b); *ki2 != *ki {
			t.Fatalf("second call differs: %+v vs %+v", ki, ki2)
		}
	})
}
