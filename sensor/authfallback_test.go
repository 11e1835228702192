package sensor

import (
	"encoding/binary"
	"testing"

	"github.com/google/gopacket/layers"

	"github.com/tschsensor/tschsensor/dissect"
)

// rpcWireMessages returns the DCE-RPC PDUs of a capture's connection to
// port, in wire order.
func rpcWireMessages(t *testing.T, path string, port uint16) []wireMsg {
	t.Helper()
	return wireMessages(t, path, layers.TCPPort(port), func(b []byte) int {
		if len(b) < 10 {
			return 0
		}
		return int(binary.LittleEndian.Uint16(b[8:]))
	})
}

// authValue returns the auth value of a DCE-RPC PDU, nil when none.
func authValue(t *testing.T, pdu []byte) []byte {
	t.Helper()
	var h dissect.DCERPCHeader
	var tr dissect.AuthTrailer
	if ok, _ := dissect.PeekDCERPC(pdu, &h); !ok {
		t.Fatalf("not a DCE-RPC PDU")
	}
	if ok, err := dissect.ParseAuthTrailer(pdu, &h, &tr); err != nil || !ok {
		return nil
	}
	return tr.Value
}

// TestSecContextKerberosFallbackToNTLM: a SPNEGO exchange that starts with
// a Kerberos AP-REQ (opened with the keytab) and falls back to NTLM, as a
// Windows acceptor makes it when it refuses the ticket, with and without
// the client's NTLM NEGOTIATE. The context must end up NTLM, keyed with the
// password, and open the NTLM conversation's sealed PDUs: the ticket's
// keys must not linger. Tokens are real: the AP-REQ of the Kerberos lab's
// first bind, the NTLM messages and PDUs of the NTLM sealed-fault capture.
func TestSecContextKerberosFallbackToNTLM(t *testing.T) {
	krb := rpcWireMessages(t, "../pcaps/krb-impacket-schtask-tcp-aes256.pcap", 49667)
	ntlm := rpcWireMessages(t, "../pcaps/impacket-schtask-tcp-fault-sealed.pcap", 49667)
	if len(krb) == 0 || krb[0].b[2] != dissect.PTypeBind {
		t.Fatal("the Kerberos capture does not start with a bind")
	}
	apReq := authValue(t, krb[0].b)
	var tokens []wireMsg // NEGOTIATE, CHALLENGE, AUTHENTICATE
	var sealed []wireMsg
	for _, m := range ntlm {
		switch m.b[2] {
		case dissect.PTypeBind, dissect.PTypeBindAck, dissect.PTypeAuth3:
			tokens = append(tokens, wireMsg{m.fromClient, authValue(t, m.b)})
		case dissect.PTypeRequest, dissect.PTypeResponse, dissect.PTypeFault:
			sealed = append(sealed, m)
		}
	}
	if len(tokens) != 3 || len(sealed) < 4 {
		t.Fatalf("NTLM capture: %d tokens, %d sealed PDUs", len(tokens), len(sealed))
	}
	creds, err := dissect.ParseCredentials([]byte(`LAB\alice:Tsch-Lab-2026!`))
	if err != nil {
		t.Fatal(err)
	}
	opt, _ := (&sealedFacts{Keytab: "pcaps/keys/lab.keytab"}).secret(t)
	for _, withNegotiate := range []bool{true, false} {
		st := newStats()
		var anomalies []string
		env := authEnv{creds: creds, keys: opt.KerberosKeys, stats: &st, anomaly: func(s string) { anomalies = append(anomalies, s) }}
		a := newSecContext(fromRPCBind)
		a.token(apReq, true, env)
		if !a.keyed() || a.mech != mechKerberos || st.Auth.TicketsOpened != 1 {
			t.Fatalf("the AP-REQ did not open with the keytab (mech %q, tickets %+v)", a.mech, st.Auth)
		}
		toks := tokens
		if !withNegotiate {
			toks = tokens[1:]
		}
		for _, tok := range toks {
			a.token(tok.b, tok.fromClient, env)
		}
		a.establish(env, "ntlm_wrong_credentials")
		if a.mech != mechNTLM || a.krb != nil || a.protector == nil || a.user == nil || a.user.User != "alice" || a.user.Mechanism != "NTLMSSP" {
			t.Fatalf("negotiate %v: context mech %q, kerberos kept %v, protector %v, user %+v; want NTLM keyed, alice",
				withNegotiate, a.mech, a.krb != nil, a.protector != nil, a.user)
		}
		for i, m := range sealed {
			var h dissect.DCERPCHeader
			var tr dissect.AuthTrailer
			dissect.PeekDCERPC(m.b, &h)
			if ok, err := dissect.ParseAuthTrailer(m.b, &h, &tr); !ok || err != nil {
				t.Fatalf("PDU %d: no auth trailer (%v)", i, err)
			}
			q := append([]byte(nil), m.b...)
			off := stubOffset(&h)
			if err := a.protector.Unseal(m.fromClient, q, q[off:tr.Offset], q[tr.Offset+8:]); err != nil {
				t.Errorf("negotiate %v: sealed PDU %d (type %d) does not open: %v", withNegotiate, i, h.PType, err)
			}
		}
		if len(anomalies) != 0 {
			t.Errorf("negotiate %v: anomalies %v", withNegotiate, anomalies)
		}
	}
}
