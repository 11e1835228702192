package sensor

import (
	"errors"

	"github.com/tschsensor/tschsensor/detect"
	"github.com/tschsensor/tschsensor/dissect"
)

// Mechanisms a security context can settle on, as the counters name them.
const (
	mechNTLM     = "ntlm"
	mechKerberos = "kerberos"
)

// Where an identity was learnt (detect.Identity.From).
const (
	fromSMBSession = "smb_session"
	fromRPCBind    = "rpc_bind"
)

// messageProtector follows the per-message security of an established
// context: it opens sealed DCE-RPC PDUs (PKT_PRIVACY) in place and checks
// signed ones (PKT_INTEGRITY), advancing its sequence and cipher state. PDUs
// must be fed in wire order, every one of them: a skipped PDU puts a stream
// cipher (NTLM's RC4) out of step for good.
type messageProtector interface {
	Unseal(fromClient bool, pdu, stub, sig []byte) error
	Verify(fromClient bool, pdu, sig []byte) error
}

// authEnv is what a security context needs from its worker: the secrets the
// operator supplied, the counters and the anomaly sink of the connection.
type authEnv struct {
	creds   *dissect.Credentials
	keys    *dissect.KerberosKeys
	stats   *Stats
	anomaly func(string)
}

func (c *conn) authEnv() authEnv {
	return authEnv{creds: c.env.opt.Credentials, keys: c.env.opt.KerberosKeys, stats: c.env.stats, anomaly: c.anomaly}
}

// secContext is one GSS security context as a passive observer sees it,
// whatever carries its tokens: an SMB session setup (SMB1 or SMB2) or a
// DCE-RPC bind, alter_context and auth3 (auth types NTLMSSP 10, SPNEGO 9,
// Kerberos 16). It learns who authenticates from the tokens, and once the
// exchange is complete and a supplied secret matches, it hands out the
// session key (SMB3 key derivation) and a message protector (DCE-RPC).
// Secrets never leave it: errors name the account, never a key.
type secContext struct {
	from string // fromSMBSession or fromRPCBind
	mech string // mechNTLM or mechKerberos once a token says so
	user *detect.Identity

	ntlmNeg, ntlmChal, ntlmAuth *dissect.NTLMMessage
	krb                         *dissect.KerberosContext

	// established: the exchange is complete (AUTHENTICATE seen, or the
	// Kerberos AP exchange); keyed: a secret opened it.
	established bool
	tried       bool
	protector   messageProtector
	sessionKey  []byte
	// keyErr says why no key was found, for call.decrypt_error.
	keyErr   string
	reported bool
}

func newSecContext(from string) *secContext { return &secContext{from: from} }

// identity is who authenticated, nil while unknown.
func (a *secContext) identity() *detect.Identity { return a.user }

// keyed reports whether the context has keys.
func (a *secContext) keyed() bool { return a.sessionKey != nil || a.krb != nil }

// token observes one security token (an SMB security blob or a DCE-RPC auth
// value), in either direction. It returns true when the token completed the
// client's side of the exchange (NTLM AUTHENTICATE, Kerberos AP-REQ): the
// identity is then known.
func (a *secContext) token(blob []byte, fromClient bool, env authEnv) bool {
	if len(blob) == 0 {
		return false
	}
	if tok := dissect.FindNTLMSSP(blob); tok != nil {
		// The message outlives this packet: parse a copy.
		m, err := dissect.ParseNTLMSSP(append([]byte(nil), tok...))
		if err != nil {
			env.anomaly("ntlmssp_malformed")
			return false
		}
		if a.mech == mechKerberos {
			// SPNEGO fell back from Kerberos to NTLM (the acceptor refused
			// the optimistic AP-REQ, or cannot do Kerberos): the ticket's
			// keys and state are not this exchange's, whether or not an
			// NTLM NEGOTIATE comes first.
			*a = secContext{from: a.from, user: a.user}
		}
		a.mech = mechNTLM
		switch m.Type {
		case dissect.NTLMNegotiate:
			// A new exchange on the same carrier starts afresh.
			*a = secContext{from: a.from, mech: mechNTLM, user: a.user, ntlmNeg: m}
		case dissect.NTLMChallenge:
			a.ntlmChal = m
		case dissect.NTLMAuthenticate:
			a.ntlmAuth = m
			a.user = identityFromNTLM(m, a.from)
			a.established = true
			return true
		}
		return false
	}
	switch typ, msg := dissect.FindKerberosMessage(blob); typ {
	case dissect.KerberosAPReq:
		if !fromClient {
			return false
		}
		k := dissect.APReqInfo(msg)
		if k == nil {
			return false
		}
		*a = secContext{from: a.from, mech: mechKerberos,
			user: &detect.Identity{Mechanism: "Kerberos", From: a.from, Realm: k.Realm, SPN: k.SPN}}
		if k.ServiceTicket {
			a.established = true
			a.openTicket(blob, env)
		}
		return k.ServiceTicket
	case dissect.KerberosAPRep:
		// The acceptor's AP-REP brings the subkey that wins (RFC 4121 2,
		// MS-KILE 3.4.5.4); DCE style's third leg is the client's, checked.
		if a.krb != nil {
			if err := a.krb.OpenAPRep(blob, !fromClient); err != nil {
				env.anomaly("kerberos_ap_rep_failed")
			}
		}
	}
	return false
}

// openTicket decrypts the AP-REQ's ticket with the supplied keys: the client
// principal it names becomes the identity, its keys the context's.
func (a *secContext) openTicket(blob []byte, env authEnv) {
	st := &env.stats.Auth
	a.tried = true
	if env.keys == nil || env.keys.Len() == 0 {
		// No secret supplied at all: as with NTLM, the call just stays
		// encrypted; only the counter says a ticket went by unopened.
		st.TicketsUnknownKey++
		return
	}
	kc, err := dissect.OpenAPReq(blob, env.keys)
	switch {
	case err == nil:
		st.TicketsOpened++
		a.krb, a.protector = kc, kc
		a.user = &detect.Identity{User: kc.ClientName, Domain: kc.ClientRealm, Mechanism: "Kerberos", From: a.from,
			Realm: kc.ServiceRealm, SPN: kc.ServiceName}
	case errors.Is(err, dissect.ErrKerberosNoKey), errors.Is(err, dissect.ErrKerberosUnsupported):
		st.TicketsUnknownKey++
		a.keyErr = "no Kerberos key of the ticket's type for " + a.user.SPN
	case errors.Is(err, dissect.ErrKerberosWrongKey):
		st.TicketsFailed++
		a.keyErr = "no supplied Kerberos key opens the ticket for " + a.user.SPN
		env.anomaly("kerberos_wrong_key")
	default:
		st.TicketsFailed++
		a.keyErr = "Kerberos AP-REQ does not decode"
		env.anomaly("kerberos_malformed")
	}
}

// smbSessionKey is the key SMB 3.x derives its keys from: NTLM's exported
// session key, or Kerberos' GSS key at the length the dialect and cipher
// want (the whole AES-256 key for 3.1.1 with an AES-256 cipher).
func (a *secContext) smbSessionKey(dialect, cipher uint16) []byte {
	if a.krb != nil {
		return a.krb.SMBSessionKey(dialect, cipher)
	}
	return a.sessionKey
}

// establish tries the supplied secrets on a complete exchange, once. A wrong
// secret is reported once per context under wrongAnomaly.
func (a *secContext) establish(env authEnv, wrongAnomaly string) {
	if a.tried || !a.established {
		return
	}
	switch a.mech {
	case mechNTLM:
		a.establishNTLM(env, wrongAnomaly)
	}
}

func (a *secContext) establishNTLM(env authEnv, wrongAnomaly string) {
	if env.creds == nil || a.ntlmChal == nil || a.ntlmAuth == nil {
		return
	}
	a.tried = true
	cands := env.creds.Lookup(a.ntlmAuth.Domain, a.ntlmAuth.User)
	if len(cands) == 0 {
		a.keyErr = "no credentials for " + a.ntlmAuth.Domain + `\` + a.ntlmAuth.User
		return
	}
	var lastErr error
	for _, cr := range cands {
		s, err := dissect.NewNTLMSession(a.ntlmNeg, a.ntlmChal, a.ntlmAuth, cr)
		if err == nil {
			a.protector, a.sessionKey, a.keyErr = s, s.SessionKey(), ""
			return
		}
		lastErr = err
	}
	a.keyErr = "credentials did not match: " + lastErr.Error()
	if !a.reported {
		a.reported = true
		env.anomaly(wrongAnomaly)
	}
}

// countUnsealed counts a PDU opened under the context's mechanism.
func (a *secContext) countUnsealed(st *Stats) {
	if a.mech == mechKerberos {
		st.Auth.UnsealedKerberos++
	} else {
		st.Auth.UnsealedNTLM++
	}
}

// unsealAnomaly names a failure to open a PDU under the context's mechanism.
func (a *secContext) unsealAnomaly() string {
	if a.mech == mechKerberos {
		return "kerberos_unseal_failed"
	}
	return "ntlm_unseal_failed"
}

func identityFromNTLM(m *dissect.NTLMMessage, from string) *detect.Identity {
	id := &detect.Identity{User: m.User, Domain: m.Domain, Workstation: m.Workstation, Mechanism: "NTLMSSP", From: from}
	if m.Anonymous {
		id.Mechanism = "anonymous"
	}
	v2 := m.NTLMv2()
	id.NTLMv2 = &v2
	return id
}
