package dissect

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	krbcrypto "github.com/oiweiwei/gokrb5.fork/v9/crypto"
	"github.com/oiweiwei/gokrb5.fork/v9/iana/etypeID"
	"github.com/oiweiwei/gokrb5.fork/v9/iana/keyusage"
	"github.com/oiweiwei/gokrb5.fork/v9/messages"
	"github.com/oiweiwei/gokrb5.fork/v9/types"
)

// Passive Kerberos (RFC 4120, RFC 4121, MS-KILE): with the service's
// long-term key, open the ticket of an AP-REQ a client sent (session key,
// client principal), its authenticator (initiator subkey, sequence number,
// GSS flags) and the acceptor's AP-REP (acceptor subkey), then follow the
// per-message tokens that key protects. Nothing here checks clocks, replay
// caches or addresses: an investigation opens captures years old.
//
// The ASN.1 and the enctypes come from gokrb5 (the fork go-msrpc uses, so
// one Kerberos library serves both); every length the library would slice
// blindly is checked here first.

const layerKerberos = "kerberos"

// Kerberos encryption types this package opens (RFC 3962, RFC 4757).
const (
	KerberosETypeAES128 int32 = 17 // aes128-cts-hmac-sha1-96
	KerberosETypeAES256 int32 = 18 // aes256-cts-hmac-sha1-96
	KerberosETypeRC4    int32 = 23 // rc4-hmac (the key is the NT hash)
)

// Limits on hostile input.
const (
	// MaxKerberosTokenLen bounds one AP-REQ/AP-REP: Windows' MaxTokenSize
	// is at most 65535 (a ticket with a large PAC); longer is not Kerberos.
	MaxKerberosTokenLen = 65535
	// MaxKerberosKeyTrials bounds how many keys one ticket is tried with
	// (about 11 µs each): a forged AP-REQ makes every candidate fail, so
	// the bound is the CPU one such packet can cost (~45 ms). Keys whose
	// principal matches the ticket come first and are never cut off by a
	// large keytab of other accounts.
	MaxKerberosKeyTrials = 4096
	// maxPrincipalComponents bounds a PrincipalName; real ones have 1-3.
	maxPrincipalComponents = 16
)

var (
	// ErrKerberosNoKey: no key of the ticket's encryption type is known.
	ErrKerberosNoKey = errors.New("kerberos: no key of the ticket's encryption type")
	// ErrKerberosWrongKey: keys of the right type exist but none decrypts
	// the ticket (another service, an older kvno, a changed password).
	ErrKerberosWrongKey = errors.New("kerberos: no known key decrypts the ticket")
	// ErrKerberosUnsupported: an encryption type other than AES-SHA1 or RC4.
	ErrKerberosUnsupported = errors.New("kerberos: unsupported encryption type")
	// ErrKerberosNoContext: a message that needs the session key came
	// before (or without) a ticket that was opened.
	ErrKerberosNoContext = errors.New("kerberos: no opened security context")
)

// KerberosKey is one long-term key of a service or account, from a keytab
// or a credentials line. Its String, GoString and LogValue never show the
// key.
type KerberosKey struct {
	// Principal is the name without realm, components joined by "/":
	// "host/srv.lab.example", "cifs/srv", "srv$", "alice".
	Principal string
	Realm     string // empty matches any realm
	KVNO      uint32 // 0 when unknown (credentials lines)
	EType     int32  // KerberosETypeAES256, ...
	// Source says where the key came from ("keytab entry 3", "credentials
	// line 7") for messages; never the key.
	Source string
	value  []byte
}

// NewKerberosKey makes a key from raw bytes, checking the length the
// encryption type requires. value is copied.
func NewKerberosKey(principal, realm string, kvno uint32, etype int32, value []byte) (KerberosKey, error) {
	if n := kerberosKeyLen(etype); n == 0 {
		return KerberosKey{}, fmt.Errorf("kerberos key for %s: encryption type %d: %w", principal, etype, ErrKerberosUnsupported)
	} else if len(value) != n {
		return KerberosKey{}, fmt.Errorf("kerberos key for %s: encryption type %d needs %d bytes, got %d", principal, etype, n, len(value))
	}
	return KerberosKey{Principal: principal, Realm: realm, KVNO: kvno, EType: etype,
		value: append([]byte(nil), value...)}, nil
}

func kerberosKeyLen(etype int32) int {
	switch etype {
	case KerberosETypeAES128, KerberosETypeRC4:
		return 16
	case KerberosETypeAES256:
		return 32
	}
	return 0
}

// KerberosETypeName is the RFC 3961 name of an encryption type.
func KerberosETypeName(etype int32) string {
	switch etype {
	case KerberosETypeAES128:
		return "aes128-cts-hmac-sha1-96"
	case KerberosETypeAES256:
		return "aes256-cts-hmac-sha1-96"
	case KerberosETypeRC4:
		return "rc4-hmac"
	}
	return fmt.Sprintf("etype-%d", etype)
}

func (k KerberosKey) String() string {
	return fmt.Sprintf("%s kvno %d %s:<redacted>", k.name(), k.KVNO, KerberosETypeName(k.EType))
}

// GoString keeps %#v from printing the key.
func (k KerberosKey) GoString() string {
	return fmt.Sprintf("dissect.KerberosKey{Principal:%q, Realm:%q, KVNO:%d, EType:%d, value:<redacted>}",
		k.Principal, k.Realm, k.KVNO, k.EType)
}

// LogValue logs the principal and type, never the key.
func (k KerberosKey) LogValue() slog.Value {
	return slog.GroupValue(slog.String("principal", k.name()), slog.Uint64("kvno", uint64(k.KVNO)),
		slog.String("etype", KerberosETypeName(k.EType)))
}

func (k KerberosKey) name() string {
	if k.Realm == "" {
		return k.Principal
	}
	return k.Principal + "@" + k.Realm
}

func (k KerberosKey) encryptionKey() types.EncryptionKey {
	return types.EncryptionKey{KeyType: k.EType, KeyValue: k.value}
}

// KerberosKeys is a set of service keys, searched for each ticket. The
// zero value is empty and usable; it is not safe for concurrent Add and
// Candidates.
type KerberosKeys struct {
	list []KerberosKey
}

// Add appends keys to the set.
func (s *KerberosKeys) Add(keys ...KerberosKey) {
	s.list = append(s.list, keys...)
}

// Len is the number of keys.
func (s *KerberosKeys) Len() int {
	if s == nil {
		return 0
	}
	return len(s.list)
}

// Keys returns the keys in the order they were added (the slice is a
// copy; the keys share their secret bytes).
func (s *KerberosKeys) Keys() []KerberosKey {
	if s == nil {
		return nil
	}
	return append([]KerberosKey(nil), s.list...)
}

// Candidates returns the keys a ticket with this encryption type, key
// version, service name (components) and realm may be encrypted with,
// best first: same principal and kvno, same principal, then every other
// key of the encryption type (a machine account's keys serve all its SPNs:
// host/, cifs/, the DRS GUID..., and a keytab may name only some). Keys
// with identical bytes are returned once. Principals compare
// case-insensitively; an account key "NAME$" matches service names whose
// host part's first label is NAME.
func (s *KerberosKeys) Candidates(etype int32, kvno uint32, sname []string, realm string) []KerberosKey {
	if s == nil {
		return nil
	}
	var exact, name, other []KerberosKey
	seen := make(map[string]bool)
	for pass := 0; pass < 3; pass++ {
		for _, k := range s.list {
			if k.EType != etype || seen[string(k.value)] {
				continue
			}
			match := k.matches(sname, realm)
			switch {
			case pass == 0 && match && k.KVNO != 0 && k.KVNO == kvno:
				exact = append(exact, k)
			case pass == 1 && match:
				name = append(name, k)
			case pass == 2:
				other = append(other, k)
			default:
				continue
			}
			seen[string(k.value)] = true
		}
	}
	return append(append(exact, name...), other...)
}

// matches reports whether the key belongs to the service sname@realm.
func (k KerberosKey) matches(sname []string, realm string) bool {
	if k.Realm != "" && realm != "" && !strings.EqualFold(k.Realm, realm) &&
		!strings.EqualFold(credFirstLabel(k.Realm), credFirstLabel(realm)) {
		return false
	}
	if strings.EqualFold(k.Principal, strings.Join(sname, "/")) {
		return true
	}
	acct, isMachine := strings.CutSuffix(k.Principal, "$")
	if !isMachine || acct == "" || len(sname) != 2 {
		return false
	}
	return strings.EqualFold(credFirstLabel(sname[1]), acct)
}

// KerberosContext is what a passive observer learns from one Kerberos
// authentication it holds the service key for: the ticket's contents, the
// authenticator, the acceptor's AP-REP, and the per-message key they
// select. It unseals and verifies DCE-RPC PDUs (see Unseal, Verify) and
// gives SMB 3.x its session key. It is not safe for concurrent use.
// String, GoString and LogValue never show keys.
type KerberosContext struct {
	// From the ticket.
	ClientName   string // cname, components joined by "/" ("alice", "SRV$")
	ClientRealm  string // crealm
	ServiceName  string // sname, components joined by "/"
	ServiceRealm string // the ticket's realm
	TicketEType  int32  // encryption type of the ticket (of the service key)
	TicketKVNO   uint32
	TicketFlags  uint32 // RFC 4120 5.3 TicketFlags, bit 0 (reserved) as the MSB
	AuthTime     time.Time
	// OpenedWith names the key that opened the ticket (principal, kvno,
	// type; never the key).
	OpenedWith string

	// From the authenticator.
	HasGSSChecksum bool   // checksum type 0x8003 (RFC 4121 4.1.1)
	GSSFlags       uint32 // its Flags field: GSSFlagDCEStyle, GSSFlagConf, ...
	InitiatorSeq   uint32 // the initiator's first sequence number

	// From the acceptor's AP-REP.
	HasAPRep    bool
	AcceptorSeq uint32

	sessionKey      types.EncryptionKey // from the ticket
	initiatorSubkey types.EncryptionKey // from the authenticator, may be empty
	acceptorSubkey  types.EncryptionKey // from the AP-REP, may be empty

	// headerSign: 0 unknown, 1 the checksum covers the PDU header and
	// sec_trailer (MS-RPCE 2.2.2.12 header signing), -1 the stub only.
	headerSign int8
	scratch    []byte
}

// GSS checksum flags (RFC 4121 4.1.1.1, MS-KILE 3.2.5.2).
const (
	GSSFlagDeleg    uint32 = 0x0001
	GSSFlagMutual   uint32 = 0x0002
	GSSFlagReplay   uint32 = 0x0004
	GSSFlagSequence uint32 = 0x0008
	GSSFlagConf     uint32 = 0x0010
	GSSFlagInteg    uint32 = 0x0020
	GSSFlagDCEStyle uint32 = 0x1000
)

func (c *KerberosContext) String() string {
	if c == nil {
		return "<nil>"
	}
	return fmt.Sprintf("kerberos %s@%s -> %s@%s (%s)", c.ClientName, c.ClientRealm,
		c.ServiceName, c.ServiceRealm, KerberosETypeName(c.gssKey().KeyType))
}

// GoString keeps %#v from printing keys.
func (c *KerberosContext) GoString() string { return c.String() }

// LogValue logs names, never keys.
func (c *KerberosContext) LogValue() slog.Value {
	return slog.GroupValue(slog.String("client", c.ClientName+"@"+c.ClientRealm),
		slog.String("service", c.ServiceName+"@"+c.ServiceRealm))
}

// Client is "name@REALM" of the ticket's client.
func (c *KerberosContext) Client() string { return c.ClientName + "@" + c.ClientRealm }

// DCEStyle reports whether the authenticator asked for DCE-style
// (three-leg) context establishment, as DCE-RPC's Kerberos does.
func (c *KerberosContext) DCEStyle() bool { return c.GSSFlags&GSSFlagDCEStyle != 0 }

// HasAcceptorSubkey reports whether the acceptor's AP-REP carried a subkey,
// which then protects every message in both directions.
func (c *KerberosContext) HasAcceptorSubkey() bool { return len(c.acceptorSubkey.KeyValue) > 0 }

// gssKey is the key per-message tokens use (RFC 4121 2, MS-KILE 3.4.5.4):
// the acceptor's subkey if its AP-REP had one, else the initiator's
// authenticator subkey, else the ticket's session key. The same key
// answers GSS_C_INQ_SSPI_SESSION_KEY, which SMB takes as its session key.
func (c *KerberosContext) gssKey() types.EncryptionKey {
	switch {
	case len(c.acceptorSubkey.KeyValue) > 0:
		return c.acceptorSubkey
	case len(c.initiatorSubkey.KeyValue) > 0:
		return c.initiatorSubkey
	}
	return c.sessionKey
}

// MessageKeyEType is the encryption type of the per-message key.
func (c *KerberosContext) MessageKeyEType() int32 { return c.gssKey().KeyType }

// FullSessionKey returns a copy of the GSS session key (acceptor subkey,
// else initiator subkey, else ticket session key), whole: 32 bytes for
// AES-256. SMB 3.1.1 with AES-256-CCM/GCM derives its keys from all of it
// (MS-SMB2 3.2.5.3.1 Session.FullSessionKey); DeriveSMB3Keys takes it.
func (c *KerberosContext) FullSessionKey() []byte {
	return append([]byte(nil), c.gssKey().KeyValue...)
}

// SessionKey returns the first 16 bytes of the GSS session key, zero-padded
// if shorter (MS-SMB2 3.2.5.3.1 Session.SessionKey): the key of SMB signing
// and of every cipher but 3.1.1's AES-256 ones. It matches
// NTLMSession.SessionKey.
func (c *KerberosContext) SessionKey() []byte {
	var k [16]byte
	copy(k[:], c.gssKey().KeyValue)
	return k[:]
}

// SMBSessionKey is the key to hand DeriveSMB3Keys for this dialect and
// cipher: the full GSS key for 3.1.1 with AES-256-CCM/GCM, the first 16
// bytes otherwise (MS-SMB2 3.2.5.3.1, 3.3.5.5.3).
func (c *KerberosContext) SMBSessionKey(dialect, cipherID uint16) []byte {
	if dialect == SMB2Dialect311 && (cipherID == SMB3CipherAES256CCM || cipherID == SMB3CipherAES256GCM) {
		return c.FullSessionKey()
	}
	return c.SessionKey()
}

// OpenAPReq opens the AP-REQ in token (a raw AP-REQ, a GSS-API
// InitialContextToken, or SPNEGO NegTokenInit/NegTokenResp carrying
// either) with the first candidate key (KerberosKeys.Candidates) that
// decrypts its ticket, then decrypts the authenticator with the ticket's
// session key. Errors: ErrKerberosNoKey, ErrKerberosWrongKey,
// ErrKerberosUnsupported, or an *Error around ErrMalformed/ErrLimit.
func OpenAPReq(token []byte, keys *KerberosKeys) (*KerberosContext, error) {
	msgType, msg := FindKerberosMessage(token)
	if msgType != KerberosAPReq {
		return nil, errAt(layerKerberos, 0, ErrMalformed, "no AP-REQ in the token")
	}
	if len(msg) > MaxKerberosTokenLen {
		return nil, errAt(layerKerberos, 0, ErrLimit, "AP-REQ of %d bytes (limit %d)", len(msg), MaxKerberosTokenLen)
	}
	var req messages.APReq
	if err := req.Unmarshal(msg); err != nil {
		return nil, errAt(layerKerberos, 0, ErrMalformed, "AP-REQ: %v", err)
	}
	tkt := &req.Ticket
	if n := len(tkt.SName.NameString); n == 0 || n > maxPrincipalComponents {
		return nil, errAt(layerKerberos, 0, ErrMalformed, "ticket sname with %d components", n)
	}
	c := &KerberosContext{
		ServiceName:  krbName(tkt.SName.NameString),
		ServiceRealm: strings.ToValidUTF8(tkt.Realm, "\uFFFD"),
		TicketEType:  tkt.EncPart.EType,
		TicketKVNO:   uint32(tkt.EncPart.KVNO),
	}
	if kerberosKeyLen(c.TicketEType) == 0 {
		return nil, fmt.Errorf("ticket for %s: %s: %w", c.ServiceName, KerberosETypeName(c.TicketEType), ErrKerberosUnsupported)
	}
	cands := keys.Candidates(c.TicketEType, c.TicketKVNO, tkt.SName.NameString, tkt.Realm)
	if len(cands) == 0 {
		return nil, fmt.Errorf("ticket for %s@%s kvno %d %s: %w", c.ServiceName, c.ServiceRealm, c.TicketKVNO,
			KerberosETypeName(c.TicketEType), ErrKerberosNoKey)
	}
	opened := false
	for i, k := range cands {
		if i >= MaxKerberosKeyTrials {
			break
		}
		plain, err := kerberosDecrypt(tkt.EncPart, k.encryptionKey(), keyusage.KDC_REP_TICKET)
		if err != nil {
			continue
		}
		// A key that decrypts and authenticates the ticket is the right
		// one; a failure to parse what it yields is the ticket's fault.
		if err := c.readEncTicketPart(plain); err != nil {
			return nil, err
		}
		c.OpenedWith = k.String()
		opened = true
		break
	}
	if !opened {
		return nil, fmt.Errorf("ticket for %s@%s kvno %d %s, %d keys tried: %w", c.ServiceName, c.ServiceRealm,
			c.TicketKVNO, KerberosETypeName(c.TicketEType), min(len(cands), MaxKerberosKeyTrials), ErrKerberosWrongKey)
	}

	plain, err := kerberosDecrypt(req.EncryptedAuthenticator, c.sessionKey, keyusage.AP_REQ_AUTHENTICATOR)
	if err != nil {
		return nil, errAt(layerKerberos, 0, ErrMalformed, "authenticator does not decrypt with the ticket's session key: %v", err)
	}
	if err := c.readAuthenticator(plain); err != nil {
		return nil, err
	}
	return c, nil
}

// readEncTicketPart takes the client's name, the flags, the auth time and
// the session key from a decrypted EncTicketPart.
func (c *KerberosContext) readEncTicketPart(plain []byte) error {
	var enc messages.EncTicketPart
	if err := enc.Unmarshal(plain); err != nil {
		return errAt(layerKerberos, 0, ErrMalformed, "EncTicketPart: %v", err)
	}
	if n := len(enc.CName.NameString); n > maxPrincipalComponents {
		return errAt(layerKerberos, 0, ErrMalformed, "ticket cname with %d components", n)
	}
	if kerberosKeyLen(enc.Key.KeyType) == 0 || len(enc.Key.KeyValue) != kerberosKeyLen(enc.Key.KeyType) {
		return fmt.Errorf("ticket session key %s of %d bytes: %w", KerberosETypeName(enc.Key.KeyType),
			len(enc.Key.KeyValue), ErrKerberosUnsupported)
	}
	c.ClientName = krbName(enc.CName.NameString)
	c.ClientRealm = strings.ToValidUTF8(enc.CRealm, "\uFFFD")
	c.AuthTime = enc.AuthTime
	c.TicketFlags = bitStringUint32(enc.Flags.Bytes)
	c.sessionKey = enc.Key
	return nil
}

// readAuthenticator takes the initiator's sequence number, GSS flags and
// subkey from a decrypted Authenticator. Its bytes are the client's
// choosing (the client knows the session key): parse them as hostile.
func (c *KerberosContext) readAuthenticator(plain []byte) error {
	var auth types.Authenticator
	if err := auth.Unmarshal(plain); err != nil {
		return errAt(layerKerberos, 0, ErrMalformed, "authenticator: %v", err)
	}
	c.InitiatorSeq = uint32(auth.SeqNumber)
	if auth.Cksum.CksumType == gssChecksumType && len(auth.Cksum.Checksum) >= 24 {
		c.HasGSSChecksum = true
		c.GSSFlags = binary.LittleEndian.Uint32(auth.Cksum.Checksum[20:24])
	}
	if len(auth.SubKey.KeyValue) > 0 {
		if len(auth.SubKey.KeyValue) != kerberosKeyLen(auth.SubKey.KeyType) {
			return fmt.Errorf("authenticator subkey %s of %d bytes: %w", KerberosETypeName(auth.SubKey.KeyType),
				len(auth.SubKey.KeyValue), ErrKerberosUnsupported)
		}
		c.initiatorSubkey = auth.SubKey
	}
	return nil
}

// gssChecksumType is the authenticator checksum type of GSS-API Kerberos
// (RFC 4121 4.1.1): Lgth(4) Bnd(16) Flags(4) [delegation].
const gssChecksumType = 0x8003

// OpenAPRep decrypts an AP-REP (raw, GSS-wrapped or in SPNEGO) with the
// ticket's session key (key usage 12). From the acceptor (fromAcceptor) it
// records the acceptor's sequence number and subkey, which from then on
// protects the messages; the initiator's third-leg AP-REP of DCE style
// carries neither and is only checked.
func (c *KerberosContext) OpenAPRep(token []byte, fromAcceptor bool) error {
	if c == nil || len(c.sessionKey.KeyValue) == 0 {
		return ErrKerberosNoContext
	}
	msgType, msg := FindKerberosMessage(token)
	if msgType != KerberosAPRep {
		return errAt(layerKerberos, 0, ErrMalformed, "no AP-REP in the token")
	}
	if len(msg) > MaxKerberosTokenLen {
		return errAt(layerKerberos, 0, ErrLimit, "AP-REP of %d bytes (limit %d)", len(msg), MaxKerberosTokenLen)
	}
	var rep messages.APRep
	if err := rep.Unmarshal(msg); err != nil {
		return errAt(layerKerberos, 0, ErrMalformed, "AP-REP: %v", err)
	}
	plain, err := kerberosDecrypt(rep.EncPart, c.sessionKey, keyusage.AP_REP_ENCPART)
	if err != nil {
		return errAt(layerKerberos, 0, ErrMalformed, "AP-REP does not decrypt with the ticket's session key: %v", err)
	}
	return c.readEncAPRepPart(plain, fromAcceptor)
}

// readEncAPRepPart takes the acceptor's sequence number and subkey from a
// decrypted EncAPRepPart (hostile bytes, like the authenticator).
func (c *KerberosContext) readEncAPRepPart(plain []byte, fromAcceptor bool) error {
	var part messages.EncAPRepPart
	if err := part.Unmarshal(plain); err != nil {
		return errAt(layerKerberos, 0, ErrMalformed, "EncAPRepPart: %v", err)
	}
	if !fromAcceptor {
		return nil
	}
	if len(part.Subkey.KeyValue) > 0 {
		if len(part.Subkey.KeyValue) != kerberosKeyLen(part.Subkey.KeyType) {
			return fmt.Errorf("AP-REP subkey %s of %d bytes: %w", KerberosETypeName(part.Subkey.KeyType),
				len(part.Subkey.KeyValue), ErrKerberosUnsupported)
		}
		c.acceptorSubkey = part.Subkey
	}
	c.HasAPRep = true
	c.AcceptorSeq = uint32(part.SequenceNumber)
	c.headerSign = 0
	return nil
}

// kerberosDecrypt is RFC 3961 decrypt-and-verify with the length checks
// gokrb5 leaves to its callers (it slices the checksum off unchecked).
func kerberosDecrypt(ed types.EncryptedData, key types.EncryptionKey, usage uint32) ([]byte, error) {
	if ed.EType != key.KeyType {
		return nil, fmt.Errorf("encrypted with %s, key is %s", KerberosETypeName(ed.EType), KerberosETypeName(key.KeyType))
	}
	var min int
	switch key.KeyType {
	case etypeID.AES128_CTS_HMAC_SHA1_96, etypeID.AES256_CTS_HMAC_SHA1_96:
		min = 16 + 12 // confounder block + HMAC-SHA1-96
	case etypeID.RC4_HMAC:
		min = 16 + 8 // HMAC-MD5 + confounder
	default:
		return nil, ErrKerberosUnsupported
	}
	if len(ed.Cipher) < min {
		return nil, fmt.Errorf("ciphertext of %d bytes, need %d", len(ed.Cipher), min)
	}
	if len(key.KeyValue) != kerberosKeyLen(key.KeyType) {
		return nil, fmt.Errorf("%d-byte %s key", len(key.KeyValue), KerberosETypeName(key.KeyType))
	}
	return krbcrypto.DecryptMessage(ed.Cipher, key, usage)
}

// krbName joins a PrincipalName's components with "/"; names end up in
// events, so invalid UTF-8 is replaced rather than passed on.
func krbName(parts []string) string {
	return strings.ToValidUTF8(strings.Join(parts, "/"), "\uFFFD")
}

// bitStringUint32 reads the first 32 bits of a KerberosFlags BIT STRING.
func bitStringUint32(b []byte) uint32 {
	var v uint32
	for i := 0; i < 4; i++ {
		v <<= 8
		if i < len(b) {
			v |= uint32(b[i])
		}
	}
	return v
}

// KerberosSalt is the Active Directory salt of an account (MS-KILE
// 3.1.1.2): the upper-case realm then the account name, except that a
// computer account NAME$ uses "host" + name.realm in lower case, and a
// service principal (with '/') the realm then its components (RFC 4120's
// default salt), which is the same thing for host/NAME.realm.
func KerberosSalt(principal, realm string) string {
	realm = strings.ToUpper(realm)
	if name, ok := strings.CutSuffix(principal, "$"); ok && name != "" && !strings.Contains(name, "/") {
		return realm + "host" + strings.ToLower(name) + "." + strings.ToLower(realm)
	}
	return realm + strings.ReplaceAll(principal, "/", "")
}

// KerberosStringToKey is RFC 3962 string-to-key for the AES enctypes
// (PBKDF2-HMAC-SHA1 over password and salt, then DK(key, "kerberos")), with
// iterations rounds (4096 is the default); for RC4-HMAC it is the NT hash
// (RFC 4757) and salt and iterations are ignored.
func KerberosStringToKey(etype int32, password, salt string, iterations uint32) ([]byte, error) {
	switch etype {
	case KerberosETypeRC4:
		h := NTHashFromPassword(password)
		return h[:], nil
	case KerberosETypeAES128, KerberosETypeAES256:
		if iterations == 0 {
			return nil, errors.New("kerberos string-to-key: zero iterations")
		}
		et, err := krbcrypto.GetEtype(etype)
		if err != nil {
			return nil, fmt.Errorf("kerberos string-to-key: %w", err)
		}
		k, err := et.StringToKey(password, salt, fmt.Sprintf("%08x", iterations))
		if err != nil {
			return nil, fmt.Errorf("kerberos string-to-key: %w", err)
		}
		return k, nil
	}
	return nil, fmt.Errorf("kerberos string-to-key: %s: %w", KerberosETypeName(etype), ErrKerberosUnsupported)
}

// KerberosKeyFromPassword derives principal@realm's key of the given
// encryption type from its password, with KerberosSalt and the default
// 4096 iterations.
func KerberosKeyFromPassword(principal, realm string, etype int32, password string) (KerberosKey, error) {
	v, err := KerberosStringToKey(etype, password, KerberosSalt(principal, realm), 4096)
	if err != nil {
		return KerberosKey{}, err
	}
	return NewKerberosKey(principal, strings.ToUpper(realm), 0, etype, v)
}
