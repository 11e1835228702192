package dissect

import (
	"crypto/hmac"
	"crypto/md5"
	"crypto/rc4"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"strings"

	//lint:ignore SA1019 the NT hash is MD4 by definition (MS-NLMP 3.3.1); no other hash will do
	"golang.org/x/crypto/md4"
)

// Passive NTLM session security (MS-NLMP 3.3, 3.4): given the three
// messages of an exchange and the account's NT hash, rebuild the session
// key a third party never sees on the wire, then follow the signing and
// sealing of the connection-oriented messages that use it (DCE-RPC at auth
// level PKT_INTEGRITY or PKT_PRIVACY). Datagram (connectionless) NTLM is
// not supported.

var (
	// ErrWrongKey: the credential does not reproduce the client's response.
	ErrWrongKey = errors.New("ntlm: credential does not match the exchange")
	// ErrBadSignature: a message signature did not verify; the session's
	// cipher state is now out of step unless the PDU was merely corrupt.
	ErrBadSignature = errors.New("ntlm: message signature mismatch")
)

// Magic constants of SIGNKEY and SEALKEY (MS-NLMP 3.4.5.2, 3.4.5.3),
// NUL-terminated as the spec hashes them.
const (
	magicClientSign = "session key to client-to-server signing key magic constant\x00"
	magicServerSign = "session key to server-to-client signing key magic constant\x00"
	magicClientSeal = "session key to client-to-server sealing key magic constant\x00"
	magicServerSeal = "session key to server-to-client sealing key magic constant\x00"
)

// ntlmSignatureLen is the size of NTLMSSP_MESSAGE_SIGNATURE (2.2.2.9).
const ntlmSignatureLen = 16

// NTLMSession is the security context of one authenticated NTLM exchange,
// as seen by a passive observer. It is not safe for concurrent use: each
// direction's messages must be fed in the order they were sent.
type NTLMSession struct {
	flags    uint32
	exported [16]byte
	ess      bool // NTLMSSP_NEGOTIATE_EXTENDED_SESSIONSECURITY
	keyExch  bool

	// With ESS each direction has its own signing key, RC4 handle and
	// sequence number.
	clientSign, serverSign [16]byte
	clientSeal, serverSeal *rc4.Cipher
	clientSeq, serverSeq   uint32

	// Without ESS one key seals both directions and the RC4 handle and the
	// sequence number are shared (3.4: "half-duplex"): messages must then be
	// fed in the order they crossed the wire, whatever their direction.
	shared    *rc4.Cipher
	sharedSeq uint32
}

// NewNTLMSession derives the session keys of an exchange and verifies cred
// against it: NTLMv2 (NTProofStr recomputed), NTLMv1 with or without
// extended session security (NT response recomputed). It returns
// ErrWrongKey when the credential does not match. negotiate may be nil: the
// flags in force are those of AUTHENTICATE (the client's final choice), or
// of CHALLENGE when AUTHENTICATE carries none.
func NewNTLMSession(negotiate, challenge, authenticate *NTLMMessage, cred Credential) (*NTLMSession, error) {
	if challenge == nil || challenge.Type != NTLMChallenge {
		return nil, errors.New("ntlm session: no CHALLENGE message")
	}
	if authenticate == nil || authenticate.Type != NTLMAuthenticate {
		return nil, errors.New("ntlm session: no AUTHENTICATE message")
	}
	if negotiate != nil && negotiate.Type != NTLMNegotiate {
		return nil, errors.New("ntlm session: first message is not NEGOTIATE")
	}
	if authenticate.Anonymous {
		return nil, errors.New("ntlm session: anonymous authentication has no session key")
	}
	flags := authenticate.Flags
	if flags == 0 {
		flags = challenge.Flags
	}
	s := &NTLMSession{
		flags:   flags,
		ess:     flags&NTLMFlagExtendedSessionSecurity != 0,
		keyExch: flags&NTLMFlagKeyExch != 0,
	}
	kxkey, err := keyExchangeKey(flags, challenge, authenticate, cred)
	if err != nil {
		return nil, err
	}
	if s.keyExch {
		if len(authenticate.EncryptedRandomSessionKey) != 16 {
			return nil, fmt.Errorf("ntlm session: KEY_EXCH with a %d-byte EncryptedRandomSessionKey: %w",
				len(authenticate.EncryptedRandomSessionKey), ErrMalformed)
		}
		c, _ := rc4.NewCipher(kxkey[:]) // 16-byte key: cannot fail
		c.XORKeyStream(s.exported[:], authenticate.EncryptedRandomSessionKey)
	} else {
		s.exported = kxkey
	}
	s.deriveKeys()
	return s, nil
}

// keyExchangeKey verifies the client's NT response with cred and returns
// KeyExchangeKey (MS-NLMP 3.3.1, 3.3.2, 3.4.5.1).
func keyExchangeKey(flags uint32, challenge, auth *NTLMMessage, cred Credential) ([16]byte, error) {
	var kx [16]byte
	switch nt := auth.NTResponse; {
	case len(nt) > 24:
		// NTLMv2 (3.3.2): NTOWFv2 over the names the client sent.
		if len(nt) < 16+28 {
			return kx, fmt.Errorf("ntlm session: NTLMv2 response of %d bytes: %w", len(nt), ErrMalformed)
		}
		key := ntowfv2(cred.NTHash, auth.User, auth.Domain)
		mac := hmac.New(md5.New, key[:])
		mac.Write(challenge.ServerChallenge[:])
		mac.Write(nt[16:])
		proof := mac.Sum(nil)
		if !hmac.Equal(proof, nt[:16]) {
			return kx, ErrWrongKey
		}
		mac = hmac.New(md5.New, key[:])
		mac.Write(proof)
		mac.Sum(kx[:0]) // SessionBaseKey; KXKEY is the identity for NTLMv2
		return kx, nil
	case len(nt) == 24:
		lm := auth.LMResponse
		var data [8]byte
		if flags&NTLMFlagExtendedSessionSecurity != 0 {
			// NTLM2 session response: the client challenge travels in LM[0..7].
			if len(lm) < 8 {
				return kx, fmt.Errorf("ntlm session: NTLMv1-ESS without client challenge: %w", ErrMalformed)
			}
			sum := md5.Sum(append(challenge.ServerChallenge[:8:8], lm[:8]...))
			copy(data[:], sum[:8])
		} else {
			data = challenge.ServerChallenge
		}
		var want [24]byte
		desl(want[:], cred.NTHash, data[:])
		if subtle.ConstantTimeCompare(want[:], nt) != 1 {
			return kx, ErrWrongKey
		}
		sbk := ntlmMD4(cred.NTHash[:])
		return kxkeyV1(flags, sbk, challenge.ServerChallenge, lm, cred)
	case len(nt) == 0:
		return kx, errors.New("ntlm session: LM-only authentication is not supported")
	default:
		return kx, fmt.Errorf("ntlm session: NT response of %d bytes: %w", len(nt), ErrMalformed)
	}
}

// kxkeyV1 is KXKEY for NTLMv1 (MS-NLMP 3.4.5.1).
func kxkeyV1(flags uint32, sbk [16]byte, serverChallenge [8]byte, lm []byte, cred Credential) ([16]byte, error) {
	var kx [16]byte
	switch {
	case flags&NTLMFlagExtendedSessionSecurity != 0:
		mac := hmac.New(md5.New, sbk[:])
		mac.Write(serverChallenge[:])
		mac.Write(lm[:8])
		mac.Sum(kx[:0])
	case flags&NTLMFlagLMKey != 0:
		if !cred.HasLMHash {
			return kx, errors.New("ntlm session: NTLMv1 LM_KEY needs the LM hash (give the password)")
		}
		if len(lm) < 8 {
			return kx, fmt.Errorf("ntlm session: LM_KEY with a %d-byte LM response: %w", len(lm), ErrMalformed)
		}
		desEncrypt7(kx[:8], cred.LMHash[:7], lm[:8])
		k2 := [7]byte{cred.LMHash[7], 0xbd, 0xbd, 0xbd, 0xbd, 0xbd, 0xbd}
		desEncrypt7(kx[8:], k2[:], lm[:8])
	case flags&NTLMFlagRequestNonNTSessionKey != 0:
		if !cred.HasLMHash {
			return kx, errors.New("ntlm session: NTLMv1 NON_NT_SESSION_KEY needs the LM hash (give the password)")
		}
		copy(kx[:8], cred.LMHash[:8])
	default:
		kx = sbk
	}
	return kx, nil
}

// ntowfv2 is NTOWFv2 (MS-NLMP 3.3.2): HMAC-MD5 keyed by the NT hash over
// UNICODE(Uppercase(User) || UserDom). Only the user name is upper-cased.
func ntowfv2(nthash [16]byte, user, domain string) [16]byte {
	mac := hmac.New(md5.New, nthash[:])
	mac.Write(ntlmUTF16LE(strings.ToUpper(user)))
	mac.Write(ntlmUTF16LE(domain))
	var out [16]byte
	mac.Sum(out[:0])
	return out
}

// desl is DESL (MS-NLMP 6): three DES encryptions of data under the 16-byte
// key split 7/7/2+zeros.
func desl(dst []byte, k [16]byte, data []byte) {
	desEncrypt7(dst[0:8], k[0:7], data)
	desEncrypt7(dst[8:16], k[7:14], data)
	k3 := [7]byte{k[14], k[15]}
	desEncrypt7(dst[16:24], k3[:], data)
}

func ntlmMD4(b []byte) [16]byte {
	h := md4.New()
	h.Write(b)
	var out [16]byte
	h.Sum(out[:0])
	return out
}

// deriveKeys applies SIGNKEY and SEALKEY (MS-NLMP 3.4.5.2, 3.4.5.3) and
// opens the RC4 handles.
func (s *NTLMSession) deriveKeys() {
	if s.ess {
		s.clientSign = md5.Sum(append(s.exported[:16:16], magicClientSign...))
		s.serverSign = md5.Sum(append(s.exported[:16:16], magicServerSign...))
		var base []byte
		switch {
		case s.flags&NTLMFlag128 != 0:
			base = s.exported[:16]
		case s.flags&NTLMFlag56 != 0:
			base = s.exported[:7]
		default:
			base = s.exported[:5]
		}
		ck := md5.Sum(append(base[:len(base):len(base)], magicClientSeal...))
		sk := md5.Sum(append(base[:len(base):len(base)], magicServerSeal...))
		s.clientSeal, _ = rc4.NewCipher(ck[:])
		s.serverSeal, _ = rc4.NewCipher(sk[:])
		return
	}
	var key []byte
	switch {
	case s.flags&NTLMFlagLMKey != 0 && s.flags&NTLMFlag56 != 0:
		key = append(s.exported[:7:7], 0xa0)
	case s.flags&NTLMFlagLMKey != 0:
		key = append(s.exported[:5:5], 0xe5, 0x38, 0xb0)
	default:
		key = s.exported[:]
	}
	s.shared, _ = rc4.NewCipher(key)
}

// SessionKey returns a copy of ExportedSessionKey, the key SMB 3.x derives
// its signing and encryption keys from.
func (s *NTLMSession) SessionKey() []byte {
	return append([]byte(nil), s.exported[:]...)
}

// Unseal decrypts one DCE-RPC PDU sealed at PKT_PRIVACY in place and checks
// its signature (MS-NLMP 3.4.3, 3.4.4; MS-RPCE 3.3.1.5.2.2). pdu is the
// whole PDU, header through auth verifier; stub must be the sub-slice of pdu
// that is encrypted (stub data plus auth padding); sig is the 16-byte
// NTLMSSP_MESSAGE_SIGNATURE from the verifier. With extended session
// security the signature covers pdu minus its last 16 bytes, decrypted;
// without it, the stub alone (CRC32). The RC4 state advances whether or not
// the signature verifies.
func (s *NTLMSession) Unseal(fromClient bool, pdu, stub, sig []byte) error {
	if len(sig) != ntlmSignatureLen || len(pdu) < ntlmSignatureLen || len(stub) > len(pdu) {
		return fmt.Errorf("ntlm unseal: %d-byte PDU, %d-byte stub, %d-byte signature: %w",
			len(pdu), len(stub), len(sig), ErrMalformed)
	}
	if s.ess {
		h := s.handle(fromClient)
		h.XORKeyStream(stub, stub)
		return s.checkESS(fromClient, pdu[:len(pdu)-ntlmSignatureLen], sig)
	}
	s.shared.XORKeyStream(stub, stub)
	return s.checkV1(stub, sig)
}

// Verify checks the signature of a PDU at PKT_INTEGRITY (nothing encrypted)
// and advances the sequence and cipher state. Without extended session
// security the checksum covers only the stub, which Verify finds from the
// DCE-RPC request or response header.
func (s *NTLMSession) Verify(fromClient bool, pdu, sig []byte) error {
	if len(sig) != ntlmSignatureLen || len(pdu) < ntlmSignatureLen {
		return fmt.Errorf("ntlm verify: %d-byte PDU, %d-byte signature: %w", len(pdu), len(sig), ErrMalformed)
	}
	if s.ess {
		return s.checkESS(fromClient, pdu[:len(pdu)-ntlmSignatureLen], sig)
	}
	body, err := dcerpcSignedBody(pdu)
	if err != nil {
		return err
	}
	return s.checkV1(body, sig)
}

func (s *NTLMSession) handle(fromClient bool) *rc4.Cipher {
	if fromClient {
		return s.clientSeal
	}
	return s.serverSeal
}

// checkESS verifies an extended-session-security signature (3.4.4.2):
// Version 1 | HMAC_MD5(SigningKey, SeqNum || Message)[0..7], RC4'd with the
// sealing handle after the message when KEY_EXCH | SeqNum.
func (s *NTLMSession) checkESS(fromClient bool, msg, sig []byte) error {
	key, seq := &s.serverSign, &s.serverSeq
	if fromClient {
		key, seq = &s.clientSign, &s.clientSeq
	}
	var seqb [4]byte
	binary.LittleEndian.PutUint32(seqb[:], *seq)
	*seq++
	mac := hmac.New(md5.New, key[:])
	mac.Write(seqb[:])
	mac.Write(msg)
	var sum [md5.Size]byte
	check := mac.Sum(sum[:0])[:8]
	if s.keyExch {
		s.handle(fromClient).XORKeyStream(check, check)
	}
	if binary.LittleEndian.Uint32(sig) != 1 ||
		subtle.ConstantTimeCompare(check, sig[4:12]) != 1 ||
		subtle.ConstantTimeCompare(seqb[:], sig[12:16]) != 1 {
		return ErrBadSignature
	}
	return nil
}

// checkV1 verifies an NTLMv1 signature (3.4.4.1): Version 1 | RandomPad |
// CRC32(Message) | SeqNum, the last twelve bytes RC4'd with the shared
// handle after the message.
func (s *NTLMSession) checkV1(msg, sig []byte) error {
	var plain [12]byte
	s.shared.XORKeyStream(plain[:], sig[4:16])
	seq := s.sharedSeq
	s.sharedSeq++
	if binary.LittleEndian.Uint32(sig) != 1 ||
		binary.LittleEndian.Uint32(plain[4:]) != crc32.ChecksumIEEE(msg) ||
		binary.LittleEndian.Uint32(plain[8:]) != seq {
		return ErrBadSignature
	}
	return nil
}

// dcerpcSignedBody returns the stub plus auth padding of a DCE-RPC request,
// response or fault PDU (C706 12.6.4; MS-RPCE 2.2.2.11): after the 24-byte
// header (plus the object UUID when PFC_OBJECT_UUID is set on a request,
// plus status and reserved on a fault), before
// the 8-byte sec_trailer and the auth value.
func dcerpcSignedBody(pdu []byte) ([]byte, error) {
	const layer = "dcerpc"
	if len(pdu) < 24 {
		return nil, errAt(layer, 0, ErrTruncated, "header of %d bytes", len(pdu))
	}
	var order binary.ByteOrder = binary.BigEndian
	if pdu[4]&0x10 != 0 {
		order = binary.LittleEndian
	}
	start := 24
	switch pdu[2] {
	case 0: // request
		if pdu[3]&0x80 != 0 {
			start += 16
		}
	case 2: // response
	case 3: // fault: status and a reserved word after the response fields
		start += 8
	default:
		return nil, errAt(layer, 2, ErrMalformed, "PDU type %d carries no signed stub", pdu[2])
	}
	authLen := int(order.Uint16(pdu[10:]))
	end := len(pdu) - authLen - 8
	if end < start {
		return nil, errAt(layer, 10, ErrMalformed, "auth_length %d leaves no stub", authLen)
	}
	return pdu[start:end], nil
}
