package dissect

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
)

// SMB 3.x encryption (MS-SMB2 2.2.41, 3.1.4.2, 3.2.5.3.1): key derivation
// from the authentication's session key, the 3.1.1 pre-authentication hash,
// and decryption of TRANSFORM_HEADER messages.

const layerSMB3 = "smb3"

// SMB2 dialects that encrypt.
const (
	SMB2Dialect300 uint16 = 0x0300
	SMB2Dialect302 uint16 = 0x0302
	SMB2Dialect311 uint16 = 0x0311
)

// Cipher identifiers (MS-SMB2 2.2.3.1.2). SMB 3.0/3.0.2 always use
// AES-128-CCM.
const (
	SMB3CipherAES128CCM uint16 = 1
	SMB3CipherAES128GCM uint16 = 2
	SMB3CipherAES256CCM uint16 = 3
	SMB3CipherAES256GCM uint16 = 4
)

// Transform header layout (MS-SMB2 2.2.41).
const (
	smb3TransformHeaderLen = 52
	smb3AADStart           = 20 // the AAD is the header from Nonce on
	smb3TagLen             = 16
	smb3CCMNonceLen        = 11
	smb3GCMNonceLen        = 12
)

// ErrSMB3Auth: a transform message failed authentication (wrong key,
// wrong direction, or tampered bytes).
var ErrSMB3Auth = errors.New("smb3: message authentication failed")

// SMB3Keys are a session's encryption keys: C2S is the server's
// decryption key (ServerIn, client to server), S2C its encryption key
// (ServerOut, server to client).
type SMB3Keys struct {
	C2S, S2C []byte
	Cipher   uint16
}

// DeriveSMB3Keys derives the encryption keys of an SMB 3.x session
// (MS-SMB2 3.2.5.3.1, 3.3.5.5.3) with the SP800-108 counter-mode HMAC-SHA256
// KDF (3.1.4.2). sessionKey is the authentication's session key (NTLM's
// ExportedSessionKey, Kerberos' subkey): 128-bit ciphers use its first 16
// bytes (Session.SessionKey, zero-padded if shorter), 256-bit ciphers the
// whole key (Session.FullSessionKey). preauthHash is the session's
// PreauthIntegrityHashValue, needed for 3.1.1 only. cipher is ignored
// before 3.1.1 (AES-128-CCM).
func DeriveSMB3Keys(sessionKey []byte, dialect uint16, cipherID uint16, preauthHash []byte) (SMB3Keys, error) {
	if len(sessionKey) == 0 {
		return SMB3Keys{}, errors.New("smb3 keys: empty session key")
	}
	var c2sLabel, s2cLabel, c2sCtx, s2cCtx []byte
	switch dialect {
	case SMB2Dialect300, SMB2Dialect302:
		cipherID = SMB3CipherAES128CCM
		c2sLabel, s2cLabel = []byte("SMB2AESCCM\x00"), []byte("SMB2AESCCM\x00")
		c2sCtx, s2cCtx = []byte("ServerIn \x00"), []byte("ServerOut\x00")
	case SMB2Dialect311:
		if len(preauthHash) != sha512.Size {
			return SMB3Keys{}, fmt.Errorf("smb3 keys: 3.1.1 needs a %d-byte preauth hash, got %d", sha512.Size, len(preauthHash))
		}
		c2sLabel, s2cLabel = []byte("SMBC2SCipherKey\x00"), []byte("SMBS2CCipherKey\x00")
		c2sCtx, s2cCtx = preauthHash, preauthHash
	default:
		return SMB3Keys{}, fmt.Errorf("smb3 keys: dialect %#04x does not encrypt", dialect)
	}
	var keyLen int
	ki := sessionKey
	switch cipherID {
	case SMB3CipherAES128CCM, SMB3CipherAES128GCM:
		keyLen = 16
		var k [16]byte
		copy(k[:], sessionKey)
		ki = k[:]
	case SMB3CipherAES256CCM, SMB3CipherAES256GCM:
		keyLen = 32
	default:
		return SMB3Keys{}, fmt.Errorf("smb3 keys: unknown cipher %d", cipherID)
	}
	return SMB3Keys{
		C2S:    smb3KDF(ki, c2sLabel, c2sCtx, keyLen),
		S2C:    smb3KDF(ki, s2cLabel, s2cCtx, keyLen),
		Cipher: cipherID,
	}, nil
}

// smb3KDF is the SP800-108 counter-mode KDF with HMAC-SHA256 and a 32-bit
// counter: L is 128 or 256 bits, so one HMAC block (i = 1) is enough.
func smb3KDF(ki, label, context []byte, n int) []byte {
	mac := hmac.New(sha256.New, ki)
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], 1)
	mac.Write(b[:])
	mac.Write(label)
	mac.Write([]byte{0})
	mac.Write(context)
	binary.BigEndian.PutUint32(b[:], uint32(n*8))
	mac.Write(b[:])
	return mac.Sum(nil)[:n]
}

// PreauthHash is the SMB 3.1.1 pre-authentication integrity hash (MS-SMB2
// 3.2.5.2, 3.2.5.3.1): SHA-512 chained over the NEGOTIATE request and
// response (connection) then each SESSION_SETUP request and response but
// the last (session). The zero value is the initial all-zero hash. Copy it
// (it is a value) to fork the session hash off the connection hash.
type PreauthHash struct {
	h [sha512.Size]byte
}

// Update chains one SMB2 message (header and body, no transport header).
func (p *PreauthHash) Update(msg []byte) {
	d := sha512.New()
	d.Write(p.h[:])
	d.Write(msg)
	d.Sum(p.h[:0])
}

// Sum returns the current hash value.
func (p *PreauthHash) Sum() []byte {
	return append([]byte(nil), p.h[:]...)
}

// DecryptTransform authenticates and decrypts one SMB2 TRANSFORM_HEADER
// message (MS-SMB2 2.2.41, 3.3.5.2.1.1): msg starts with 0xFD 'S' 'M' 'B';
// the AAD is header bytes 20..51, the tag its Signature. fromClient picks
// the C2S key. The result is a new slice holding the SMB2 message(s).
func DecryptTransform(keys SMB3Keys, fromClient bool, msg []byte) ([]byte, error) {
	if len(msg) < smb3TransformHeaderLen {
		return nil, errAt(layerSMB3, 0, ErrTruncated, "transform header of %d bytes", len(msg))
	}
	if msg[0] != 0xfd || msg[1] != 'S' || msg[2] != 'M' || msg[3] != 'B' {
		return nil, errAt(layerSMB3, 0, ErrMalformed, "not a transform header")
	}
	size := uint64(binary.LittleEndian.Uint32(msg[36:]))
	if size > uint64(len(msg)-smb3TransformHeaderLen) {
		return nil, errAt(layerSMB3, 36, ErrTruncated, "OriginalMessageSize %d, %d bytes follow", size, len(msg)-smb3TransformHeaderLen)
	}
	key := keys.S2C
	if fromClient {
		key = keys.C2S
	}
	aead, nonceLen, err := smb3AEAD(key, keys.Cipher)
	if err != nil {
		return nil, err
	}
	ct := msg[smb3TransformHeaderLen : smb3TransformHeaderLen+int(size)]
	sealed := make([]byte, 0, len(ct)+smb3TagLen)
	sealed = append(append(sealed, ct...), msg[4:4+smb3TagLen]...)
	out, err := aead.Open(sealed[:0], msg[20:20+nonceLen], sealed, msg[smb3AADStart:smb3TransformHeaderLen])
	if err != nil {
		return nil, ErrSMB3Auth
	}
	return out, nil
}

// smb3AEAD opens the cipher a session negotiated.
func smb3AEAD(key []byte, cipherID uint16) (cipher.AEAD, int, error) {
	want := 16
	if cipherID == SMB3CipherAES256CCM || cipherID == SMB3CipherAES256GCM {
		want = 32
	}
	if len(key) != want {
		return nil, 0, fmt.Errorf("smb3: %d-byte key for cipher %d", len(key), cipherID)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, 0, fmt.Errorf("smb3: %w", err)
	}
	switch cipherID {
	case 0, SMB3CipherAES128CCM, SMB3CipherAES256CCM:
		a, err := newCCM(block, smb3CCMNonceLen, smb3TagLen)
		return a, smb3CCMNonceLen, err
	case SMB3CipherAES128GCM, SMB3CipherAES256GCM:
		a, err := cipher.NewGCM(block)
		if err != nil {
			return nil, 0, fmt.Errorf("smb3: %w", err)
		}
		return a, smb3GCMNonceLen, nil
	}
	return nil, 0, fmt.Errorf("smb3: unknown cipher %d", cipherID)
}

// ccm is AES-CCM (RFC 3610, NIST SP 800-38C) over a 128-bit block cipher,
// as a cipher.AEAD: the standard library has none.
type ccm struct {
	b        cipher.Block
	nonceLen int // 7..13; the length field takes the other 15-nonceLen bytes
	tagLen   int // 4..16, even
}

func newCCM(b cipher.Block, nonceLen, tagLen int) (*ccm, error) {
	if b.BlockSize() != 16 || nonceLen < 7 || nonceLen > 13 || tagLen < 4 || tagLen > 16 || tagLen%2 != 0 {
		return nil, errors.New("ccm: bad parameters")
	}
	return &ccm{b: b, nonceLen: nonceLen, tagLen: tagLen}, nil
}

func (c *ccm) NonceSize() int { return c.nonceLen }
func (c *ccm) Overhead() int  { return c.tagLen }

// maxLen is the largest message the length field can describe.
func (c *ccm) maxLen() uint64 {
	l := 15 - c.nonceLen
	if l >= 8 {
		return 1<<63 - 1
	}
	return 1<<(8*uint(l)) - 1
}

// mac computes the CBC-MAC T over B0, the encoded AAD and the plaintext.
func (c *ccm) mac(nonce, plaintext, aad []byte) [16]byte {
	var x, blk [16]byte
	l := 15 - c.nonceLen
	blk[0] = byte((c.tagLen-2)/2<<3 | (l - 1))
	if len(aad) > 0 {
		blk[0] |= 0x40
	}
	copy(blk[1:], nonce)
	n := uint64(len(plaintext))
	for i := 15; i > c.nonceLen; i-- {
		blk[i] = byte(n)
		n >>= 8
	}
	c.b.Encrypt(x[:], blk[:])
	if len(aad) > 0 {
		// RFC 3610 2.2 length prefix: 2 bytes below 0xff00, else 0xfffe + 4.
		var hdr []byte
		if len(aad) < 0xff00 {
			hdr = binary.BigEndian.AppendUint16(nil, uint16(len(aad)))
		} else {
			hdr = binary.BigEndian.AppendUint32([]byte{0xff, 0xfe}, uint32(len(aad)))
		}
		c.cbc(&x, hdr, aad)
	}
	c.cbc(&x, nil, plaintext)
	return x
}

// cbc folds prefix||data, zero-padded to whole blocks, into the CBC state.
func (c *ccm) cbc(x *[16]byte, prefix, data []byte) {
	var blk [16]byte
	fill := copy(blk[:], prefix)
	for len(data) > 0 || fill > 0 {
		k := copy(blk[fill:], data)
		data = data[k:]
		fill += k
		if fill == 16 || len(data) == 0 {
			subtle.XORBytes(x[:], x[:], blk[:])
			c.b.Encrypt(x[:], x[:])
			blk, fill = [16]byte{}, 0
		}
	}
}

// ctr XORs src with the key stream from counter block 1 on and returns S0,
// the block that masks the tag.
func (c *ccm) ctr(dst, src, nonce []byte) [16]byte {
	var a, s0 [16]byte
	a[0] = byte(15 - c.nonceLen - 1)
	copy(a[1:], nonce)
	c.b.Encrypt(s0[:], a[:])
	a[15] = 1
	stream := cipher.NewCTR(c.b, a[:])
	stream.XORKeyStream(dst, src)
	return s0
}

func (c *ccm) Seal(dst, nonce, plaintext, aad []byte) []byte {
	if len(nonce) != c.nonceLen || uint64(len(plaintext)) > c.maxLen() {
		return nil // misuse: no wire input reaches Seal, and we never panic
	}
	t := c.mac(nonce, plaintext, aad)
	ret, out := ccmSliceForAppend(dst, len(plaintext)+c.tagLen)
	s0 := c.ctr(out[:len(plaintext)], plaintext, nonce)
	subtle.XORBytes(out[len(plaintext):], t[:c.tagLen], s0[:c.tagLen])
	return ret
}

func (c *ccm) Open(dst, nonce, ciphertext, aad []byte) ([]byte, error) {
	if len(nonce) != c.nonceLen || len(ciphertext) < c.tagLen || uint64(len(ciphertext)-c.tagLen) > c.maxLen() {
		return nil, errors.New("ccm: bad nonce or message length")
	}
	n := len(ciphertext) - c.tagLen
	tag := ciphertext[n:]
	ret, out := ccmSliceForAppend(dst, n)
	// out may alias ciphertext (in-place Open): the tag is read first.
	var gotTag [16]byte
	copy(gotTag[:], tag)
	s0 := c.ctr(out, ciphertext[:n], nonce)
	t := c.mac(nonce, out, aad)
	subtle.XORBytes(t[:c.tagLen], t[:c.tagLen], s0[:c.tagLen])
	if subtle.ConstantTimeCompare(t[:c.tagLen], gotTag[:c.tagLen]) != 1 {
		clear(out)
		return nil, errors.New("ccm: message authentication failed")
	}
	return ret, nil
}

// sliceForAppend extends in by n bytes, returning the whole and the new part.
func ccmSliceForAppend(in []byte, n int) (head, tail []byte) {
	if total := len(in) + n; cap(in) >= total {
		head = in[:total]
	} else {
		head = make([]byte, total)
		copy(head, in)
	}
	return head, head[len(in):]
}
