package dissect

import (
	"bytes"
	"crypto/des"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"log/slog"
	"strings"
	"unicode/utf16"

	//lint:ignore SA1019 the NT hash is MD4 by definition (MS-NLMP 3.3.1); no other hash will do
	"golang.org/x/crypto/md4"
)

// Credential is one account the sensor may use to follow an NTLM-protected
// exchange passively. Its String, GoString and LogValue never show a hash.
type Credential struct {
	Domain, User string // empty Domain matches any domain
	NTHash       [16]byte
	// LMHash is the LMOWFv1 value, known only when the credential came from
	// a password of at most 14 characters; NTLMv1 with NTLMSSP_NEGOTIATE_LM_KEY
	// or REQUEST_NON_NT_SESSION_KEY needs it.
	LMHash    [16]byte
	HasLMHash bool
}

func (c Credential) String() string {
	return c.Domain + `\` + c.User + ":<redacted>"
}

// GoString keeps %#v from printing the hash fields.
func (c Credential) GoString() string {
	return fmt.Sprintf("dissect.Credential{Domain:%q, User:%q, NTHash:<redacted>}", c.Domain, c.User)
}

// LogValue logs the account, never the secret.
func (c Credential) LogValue() slog.Value {
	return slog.GroupValue(slog.String("domain", c.Domain), slog.String("user", c.User))
}

// Credentials is a parsed credential file: NTLM accounts and Kerberos keys.
type Credentials struct {
	list []Credential
	krb  []KerberosKey
}

// MaxCredentialLineLen bounds one line of a credential file: longer lines are
// not credentials and are refused rather than kept.
const MaxCredentialLineLen = 4096

// ParseCredentials reads one credential per line:
//
//	DOMAIN\user:password
//	DOMAIN\user:nt:<32 hex digits>
//	\user:password   or   user:password   (any domain)
//	user@REALM:password                    (Kerberos realm as the domain)
//	PRINCIPAL:aes256:<64 hex digits>       (a Kerberos key only)
//	PRINCIPAL:aes128:<32 hex digits>
//	PRINCIPAL:aes256-cts-hmac-sha1-96:<64 hex digits>   (secretsdump's form)
//
// PRINCIPAL is a service or account name with an optional realm or domain:
// host/srv.lab.example@LAB.EXAMPLE, srv$@LAB.EXAMPLE, LAB\srv$. Every
// password and nt: line is also an RC4-HMAC Kerberos key (etype 23: the key
// is the NT hash); a password line whose realm is known (user@REALM, or a
// DNS domain before the '\') also yields the account's AES keys (RFC 3962
// string-to-key with the Active Directory salt: REALM + user, or for a
// machine account NAME$, REALM + "host" + name.realm in lower case).
// Lines naming a service (with a '/') are Kerberos keys only.
//
// Blank lines and lines starting with '#' are skipped. Everything after the
// first ':' is the password, spaces included, so passwords may contain ':'
// (only a trailing "\r" is dropped). Errors name the line, never its secret.
func ParseCredentials(data []byte) (*Credentials, error) {
	c := &Credentials{}
	for n, line := range bytes.Split(data, []byte{'\n'}) {
		lineNo := n + 1
		line = bytes.TrimSuffix(line, []byte{'\r'})
		if t := bytes.TrimSpace(line); len(t) == 0 || t[0] == '#' {
			continue
		}
		if len(line) > MaxCredentialLineLen {
			return nil, fmt.Errorf("credentials line %d: longer than %d bytes", lineNo, MaxCredentialLineLen)
		}
		account, secret, ok := strings.Cut(string(line), ":")
		if !ok {
			return nil, fmt.Errorf("credentials line %d: no ':' after the account name", lineNo)
		}
		account = strings.TrimSpace(account)
		var cred Credential
		realm := ""
		if dom, user, ok := strings.Cut(account, `\`); ok {
			cred.Domain, cred.User = strings.TrimSpace(dom), strings.TrimSpace(user)
			if strings.Contains(cred.Domain, ".") {
				realm = strings.ToUpper(cred.Domain)
			}
		} else if user, rlm, ok := strings.Cut(account, "@"); ok {
			cred.User, cred.Domain = strings.TrimSpace(user), strings.TrimSpace(rlm)
			realm = strings.ToUpper(cred.Domain)
		} else {
			cred.User = account
		}
		if cred.User == "" {
			return nil, fmt.Errorf("credentials line %d: empty user name", lineNo)
		}
		src := fmt.Sprintf("credentials line %d", lineNo)
		if etype, h, isKey := credKerberosKey(secret); isKey {
			raw, err := hex.DecodeString(strings.TrimSpace(h))
			if err != nil || len(raw) != kerberosKeyLen(etype) {
				return nil, fmt.Errorf("credentials line %d: %s key must be %d hex digits", lineNo,
					KerberosETypeName(etype), 2*kerberosKeyLen(etype))
			}
			k, _ := NewKerberosKey(cred.User, realm, 0, etype, raw) // length checked above
			k.Source = src
			c.krb = append(c.krb, k)
			continue
		}
		password, hasPassword := "", false
		if h, isHash := strings.CutPrefix(secret, "nt:"); isHash {
			h = strings.TrimSpace(h)
			raw, err := hex.DecodeString(h)
			if err != nil || len(raw) != 16 {
				return nil, fmt.Errorf("credentials line %d: NT hash must be 32 hex digits", lineNo)
			}
			copy(cred.NTHash[:], raw)
		} else {
			password, hasPassword = secret, true
			cred.NTHash = NTHashFromPassword(secret)
			cred.LMHash, cred.HasLMHash = lmHashFromPassword(secret)
		}
		rc4, _ := NewKerberosKey(cred.User, realm, 0, KerberosETypeRC4, cred.NTHash[:]) // 16 bytes
		rc4.Source = src
		c.krb = append(c.krb, rc4)
		if hasPassword && realm != "" {
			for _, etype := range []int32{KerberosETypeAES256, KerberosETypeAES128} {
				k, err := KerberosKeyFromPassword(cred.User, realm, etype, password)
				if err != nil {
					return nil, fmt.Errorf("credentials line %d: %w", lineNo, err)
				}
				k.Source = src
				c.krb = append(c.krb, k)
			}
		}
		if !strings.Contains(cred.User, "/") {
			c.list = append(c.list, cred)
		}
	}
	return c, nil
}

// credKerberosKey recognises the aes256: and aes128: secrets, and the
// enctype names secretsdump prints (aes256-cts-hmac-sha1-96:<hex>), so its
// lines can be pasted as they are.
func credKerberosKey(secret string) (int32, string, bool) {
	for _, p := range []struct {
		prefix string
		etype  int32
	}{
		{"aes256:", KerberosETypeAES256}, {"aes256-cts-hmac-sha1-96:", KerberosETypeAES256},
		{"aes128:", KerberosETypeAES128}, {"aes128-cts-hmac-sha1-96:", KerberosETypeAES128},
	} {
		if h, ok := strings.CutPrefix(secret, p.prefix); ok {
			return p.etype, h, true
		}
	}
	return 0, "", false
}

// KerberosKeys returns the Kerberos keys the file's lines give: aes256:
// and aes128: lines, every NT hash as an RC4-HMAC key, and the AES keys of
// passwords whose realm is known. The slice is a copy.
func (c *Credentials) KerberosKeys() []KerberosKey {
	if c == nil {
		return nil
	}
	return append([]KerberosKey(nil), c.krb...)
}

// Len is the number of credentials.
func (c *Credentials) Len() int {
	if c == nil {
		return 0
	}
	return len(c.list)
}

// Lookup returns the credentials that may belong to domain\user, compared
// case-insensitively: exact domain matches first, then entries whose domain
// matches on its first DNS label (LAB vs lab.example), then entries with an
// empty domain. The caller verifies each candidate against the exchange.
func (c *Credentials) Lookup(domain, user string) []Credential {
	if c == nil {
		return nil
	}
	var exact, label, any []Credential
	for _, cr := range c.list {
		if !strings.EqualFold(cr.User, user) {
			continue
		}
		switch {
		case cr.Domain == "":
			any = append(any, cr)
		case strings.EqualFold(cr.Domain, domain):
			exact = append(exact, cr)
		case domain != "" && strings.EqualFold(credFirstLabel(cr.Domain), credFirstLabel(domain)):
			label = append(label, cr)
		}
	}
	return append(append(exact, label...), any...)
}

func credFirstLabel(d string) string {
	l, _, _ := strings.Cut(d, ".")
	return l
}

// NTHashFromPassword is NTOWFv1 (MS-NLMP 3.3.1): MD4 of the UTF-16LE password.
func NTHashFromPassword(pw string) [16]byte {
	h := md4.New()
	h.Write(ntlmUTF16LE(pw))
	var out [16]byte
	h.Sum(out[:0])
	return out
}

// lmHashFromPassword is LMOWFv1 (MS-NLMP 3.3.1): DES of "KGS!@#$%" under the
// two halves of the upper-cased, zero-padded 14-byte password. Windows keeps
// no LM hash for longer or non-ASCII passwords, so neither do we.
func lmHashFromPassword(pw string) ([16]byte, bool) {
	var out [16]byte
	if len(pw) > 14 {
		return out, false
	}
	var p [14]byte
	for i := 0; i < len(pw); i++ {
		if pw[i] >= 0x80 {
			return out, false
		}
	}
	copy(p[:], strings.ToUpper(pw))
	magic := []byte("KGS!@#$%")
	desEncrypt7(out[:8], p[:7], magic)
	desEncrypt7(out[8:], p[7:], magic)
	return out, true
}

// desEncrypt7 encrypts one block under a 56-bit key given as 7 bytes,
// spreading the key bits over 8 bytes as DES expects (MS-NLMP 6, DES()).
func desEncrypt7(dst, key7, block []byte) {
	var k [8]byte
	k[0] = key7[0]
	k[1] = key7[0]<<7 | key7[1]>>1
	k[2] = key7[1]<<6 | key7[2]>>2
	k[3] = key7[2]<<5 | key7[3]>>3
	k[4] = key7[3]<<4 | key7[4]>>4
	k[5] = key7[4]<<3 | key7[5]>>5
	k[6] = key7[5]<<2 | key7[6]>>6
	k[7] = key7[6] << 1
	c, _ := des.NewCipher(k[:]) // 8-byte key: cannot fail
	c.Encrypt(dst, block)
}

// ntlmUTF16LE encodes s as UTF-16LE.
func ntlmUTF16LE(s string) []byte {
	u := utf16.Encode([]rune(s))
	b := make([]byte, 2*len(u))
	for i, v := range u {
		binary.LittleEndian.PutUint16(b[2*i:], v)
	}
	return b
}
