package sensor

import (
	"github.com/tschsensor/tschsensor/dissect"
)

// sessionSetup is one SMB2 SESSION_SETUP exchange in progress: its security
// context and its SMB 3.1.1 pre-authentication hash. It travels with the
// pending request because the first request of an exchange carries session
// id 0: two setups interleaved on one connection are told apart by message
// id until the server names their sessions.
type sessionSetup struct {
	auth *secContext
	hash dissect.PreauthHash
	// binding: SMB2_SESSION_FLAG_BINDING, a new channel of a session
	// established on another connection (multichannel).
	binding bool
}

// smb2SessionFlagBinding is SESSION_SETUP request Flags bit 0 (MS-SMB2
// 2.2.5).
const smb2SessionFlagBinding = 0x01

// setupRequest follows a SESSION_SETUP request: it continues the session's
// exchange in progress, or starts one from the connection's hash.
func (s *smbState) setupRequest(h *dissect.SMB2Header, msg, blob []byte) *sessionSetup {
	var ss *smbSession
	var st *sessionSetup
	if h.SessionID != 0 {
		ss = s.session(h.SessionID)
		st = ss.setup
	}
	if st == nil {
		st = &sessionSetup{auth: newSecContext(fromSMBSession), hash: s.connHash}
		st.binding = h.SessionID != 0 && len(msg) > dissect.SMB2HeaderLen+2 &&
			msg[dissect.SMB2HeaderLen+2]&smb2SessionFlagBinding != 0
		if ss != nil {
			ss.setup = st
		}
	}
	st.hash.Update(msg)
	if st.auth.token(blob, true, s.c.authEnv()) && ss != nil {
		ss.user = st.auth.identity()
	}
	return st
}

// setupResponse follows a SESSION_SETUP response: the hash takes in every
// response but the last (MS-SMB2 3.2.5.3.1), and success establishes the
// session's keys.
func (s *smbState) setupResponse(h *dissect.SMB2Header, msg []byte, st *sessionSetup) {
	ss := s.session(h.SessionID)
	if ss.user == nil {
		s.c.env.stats.SMBSessions++
	}
	if st == nil {
		return
	}
	if blob, err := dissect.SessionSetupBlob(msg, true); err == nil {
		st.auth.token(blob, false, s.c.authEnv())
	}
	if id := st.auth.identity(); id != nil {
		ss.user = id
	}
	switch h.Status {
	case statusMoreProcessing:
		st.hash.Update(msg)
		ss.setup = st
	case 0:
		ss.setup = nil
		s.established(ss, st)
	default:
		ss.setup = nil
	}
}

// established takes a successful session setup. A re-authentication keeps
// the keys of the session's first authentication (MS-SMB2 3.3.5.5.3), and a
// channel bound to a session keeps the session's encryption keys (3.3.5.5.2):
// only a session's first setup derives keys, or reports a wrong secret.
func (s *smbState) established(ss *smbSession, st *sessionSetup) {
	if st.binding {
		s.boundKeys(ss)
		return
	}
	if ss.auth != nil {
		return
	}
	ss.auth = st.auth
	if s.dialect < 0x0300 {
		return
	}
	a := st.auth
	a.establish(s.c.authEnv(), "smb3_wrong_credentials")
	if !a.keyed() {
		return
	}
	var hash []byte
	if s.dialect == 0x0311 {
		hash = st.hash.Sum()
	}
	cipher := s.cipher
	if cipher == 0 {
		cipher = dissect.SMB3CipherAES128CCM
	}
	k, err := dissect.DeriveSMB3Keys(a.smbSessionKey(s.dialect, cipher), s.dialect, cipher, hash)
	if err != nil {
		s.c.anomaly("smb3_key_derivation_failed")
		return
	}
	ss.keys = &k
	s.keyed = true
	if a.mech == mechKerberos {
		s.c.env.stats.Auth.SMB3KeyedKerberos++
	} else {
		s.c.env.stats.Auth.SMB3KeyedNTLM++
	}
	s.c.env.keys.put(s.c.endpoints().Server, ss.id, &k)
}

// maxKeyLookups bounds a session's lookups in the shared key store: at its
// binding, then at its first transform messages when it has no keys (a
// session set up on another connection before the capture saw this one, or
// a live worker that has not yet processed the setup on the other
// connection). A session without keys (no secret supplied) then costs
// nothing per message.
const maxKeyLookups = 3

// boundKeys gives a session the keys it was established with on another
// connection, if any: multichannel binds new connections to a session with
// the same keys. The other connection may be on another worker (see
// workerKeys.get).
func (s *smbState) boundKeys(ss *smbSession) {
	if ss.keyLookups >= maxKeyLookups {
		return
	}
	ss.keyLookups++
	if k := s.c.env.keys.get(s.c.endpoints().Server, ss.id); k != nil {
		ss.keys = k
		s.keyed = true
	}
}

func (w *Worker) sessionKeys() *sessionKeyStore {
	if w.smbKeys == nil {
		w.smbKeys = newSessionKeyStore(maxSharedSessionKeys)
	}
	return w.smbKeys
}
