package dissect

import (
	"context"
	"crypto/hmac"
	"encoding/binary"
	"fmt"

	gsskrb5 "github.com/oiweiwei/go-msrpc/ssp/krb5/crypto"
	"github.com/oiweiwei/go-msrpc/ssp/krb5/crypto/rfc4757"
	krbcrypto "github.com/oiweiwei/gokrb5.fork/v9/crypto"
	"github.com/oiweiwei/gokrb5.fork/v9/types"
)

// Kerberos per-message protection of DCE-RPC PDUs (MS-RPCE 2.2.2.11,
// 3.3.1.5.2; MS-KILE 3.4.5.4): RFC 4121 wrap and MIC tokens for AES, RFC
// 4757 ones for RC4-HMAC, DCE style, read from a capture in both
// directions. The token arithmetic is go-msrpc's (ssp/krb5/crypto, the
// code its own client and server seal with); this file picks the key,
// direction and byte ranges, and checks every length first, since that
// code trusts its input.

// Sealer follows the protection of one authenticated DCE-RPC security
// context: NTLMSession and KerberosContext both implement it. Messages of
// each direction must be given in wire order.
type Sealer interface {
	// Unseal decrypts a PDU at PKT_PRIVACY in place and checks its
	// checksum. pdu is the whole PDU (header to auth value), stub the
	// sub-slice of pdu between header and sec_trailer (stub data plus auth
	// padding), authValue the auth verifier's value.
	Unseal(fromClient bool, pdu, stub, authValue []byte) error
	// Verify checks the checksum of a PDU at PKT_INTEGRITY.
	Verify(fromClient bool, pdu, authValue []byte) error
}

var (
	_ Sealer = (*NTLMSession)(nil)
	_ Sealer = (*KerberosContext)(nil)
)

// ErrKerberosBadChecksum: a wrap or MIC token's checksum did not verify
// (wrong key, wrong direction, or altered bytes). errors.Is also matches
// ErrBadSignature, so both mechanisms' failures are one condition.
var ErrKerberosBadChecksum error = &aliasError{msg: "kerberos: message checksum mismatch", is: ErrBadSignature}

type aliasError struct {
	msg string
	is  error
}

func (e *aliasError) Error() string { return e.msg }
func (e *aliasError) Unwrap() error { return e.is }

// Token layouts.
const (
	cfxHeaderLen      = 16 // RFC 4121 4.2.6: TOK_ID Flags Filler EC RRC SND_SEQ
	cfxChecksumLen    = 12 // HMAC-SHA1-96
	cfxConfounderLen  = 16 // one AES block
	cfxMaxECRRC       = 1024
	rc4WrapTokenLen   = 32 // RFC 4757 7.3: TOK_ID SGN_ALG SEAL_ALG Filler SND_SEQ SGN_CKSUM Confounder
	rc4MICTokenLen    = 24
	cfxFlagAcceptor   = 0x01
	cfxFlagSealed     = 0x02
	cfxFlagAcceptorSK = 0x04
)

// Unseal decrypts a DCE-RPC request or response sealed at PKT_PRIVACY with
// this context's message key, in place, and verifies its checksum (RFC
// 4121 4.2.4 wrap token with confidentiality, DCE style: the token in
// authValue, the sealed stub in place; RFC 4757 7.3 for RC4-HMAC). stub
// must be the PDU's stub plus auth padding. Whether the checksum also
// covers the PDU header and sec_trailer (header signing, negotiated in the
// bind) is learnt from the first PDU that verifies; until then both are
// tried. The stub is decrypted whether or not the checksum verifies.
func (c *KerberosContext) Unseal(fromClient bool, pdu, stub, authValue []byte) error {
	parts, err := c.pduParts(pdu)
	if err != nil {
		return err
	}
	if len(parts.stub) != len(stub) || len(stub) > 0 && &parts.stub[0] != &stub[0] {
		return fmt.Errorf("kerberos unseal: stub of %d bytes is not the PDU's %d-byte body: %w",
			len(stub), len(parts.stub), ErrMalformed)
	}
	key := c.gssKey()
	modes := c.signModes()
	if len(modes) > 1 {
		// The first attempt decrypts in place: keep the ciphertext.
		c.scratch = append(c.scratch[:0], parts.stub...)
	}
	for i, hs := range modes {
		if i > 0 {
			copy(parts.stub, c.scratch)
		}
		ok, err := c.unwrap(key, fromClient, parts.forSign(hs), parts.stub, authValue)
		if err != nil {
			return err
		}
		if ok {
			c.learn(hs)
			return nil
		}
	}
	return ErrKerberosBadChecksum
}

// Verify checks the MIC token of a DCE-RPC request or response at
// PKT_INTEGRITY (RFC 4121 4.2.6.1, RFC 4757 7.2).
func (c *KerberosContext) Verify(fromClient bool, pdu, authValue []byte) error {
	parts, err := c.pduParts(pdu)
	if err != nil {
		return err
	}
	key := c.gssKey()
	for _, hs := range c.signModes() {
		ok, err := c.verifyMIC(key, fromClient, parts.forSign(hs), authValue)
		if err != nil {
			return err
		}
		if ok {
			c.learn(hs)
			return nil
		}
	}
	return ErrKerberosBadChecksum
}

func (c *KerberosContext) signModes() []bool {
	switch c.headerSign {
	case 1:
		return []bool{true}
	case -1:
		return []bool{false}
	}
	return []bool{true, false}
}

func (c *KerberosContext) learn(headerSign bool) {
	if headerSign {
		c.headerSign = 1
	} else {
		c.headerSign = -1
	}
}

// pduParts are the three byte ranges of a PDU a DCE-RPC checksum covers.
type pduParts struct {
	header, stub, trailer []byte
}

func (p pduParts) forSign(headerSign bool) [][]byte {
	if headerSign {
		return [][]byte{p.header, p.stub, p.trailer}
	}
	return [][]byte{p.stub}
}

// pduParts splits pdu into header, stub (plus auth padding) and the 8-byte
// sec_trailer.
func (c *KerberosContext) pduParts(pdu []byte) (pduParts, error) {
	if c == nil || len(c.gssKey().KeyValue) == 0 {
		return pduParts{}, ErrKerberosNoContext
	}
	body, err := dcerpcSignedBody(pdu)
	if err != nil {
		return pduParts{}, err
	}
	bodyOff := cap(pdu) - cap(body) // body is a sub-slice of pdu
	end := bodyOff + len(body)
	return pduParts{header: pdu[:bodyOff], stub: body, trailer: pdu[end : end+8]}, nil
}

// cipher makes go-msrpc's cipher for the sender's direction: IsLocal is
// "sent by the initiator", which selects key usage 24/25 against 22/23
// (AES) or the direction bytes of SND_SEQ (RC4).
func gssCipher(key types.EncryptionKey, fromClient, acceptorSubkey bool) (gsskrb5.Cipher, error) {
	et, err := krbcrypto.GetEtype(key.KeyType)
	if err != nil {
		return nil, fmt.Errorf("kerberos: %s: %w", KerberosETypeName(key.KeyType), ErrKerberosUnsupported)
	}
	return gsskrb5.NewCipher(context.Background(), gsskrb5.CipherSetting{
		Key: key, Type: et, IsSubKey: acceptorSubkey, IsLocal: fromClient, DCEStyle: true,
	})
}

// unwrap verifies and decrypts one wrap token; false means the checksum
// did not match, an error that the token is malformed.
func (c *KerberosContext) unwrap(key types.EncryptionKey, fromClient bool, forSign [][]byte, stub, tok []byte) (bool, error) {
	switch key.KeyType {
	case KerberosETypeAES128, KerberosETypeAES256:
		n, err := cfxWrapLen(tok, fromClient)
		if err != nil {
			return false, err
		}
		ciph, err := gssCipher(key, fromClient, tok[2]&cfxFlagAcceptorSK != 0)
		if err != nil {
			return false, err
		}
		// go-msrpc zeroes RRC in the token it is given: hand it a copy.
		sgn := append([]byte(nil), tok[:n]...)
		ok, err := ciph.UnwrapEx(context.Background(), 0, forSign, [][]byte{stub}, sgn)
		if err != nil {
			return false, fmt.Errorf("kerberos unwrap: %v: %w", err, ErrMalformed)
		}
		return ok, nil
	case KerberosETypeRC4:
		raw, err := rc4Token(tok, rc4WrapTokenLen, 0x0201)
		if err != nil {
			return false, err
		}
		if binary.BigEndian.Uint16(raw[4:6]) != rfc4757.SealAlgorithmRC4 {
			return false, errAt(layerKerberos, 4, ErrMalformed, "RC4 wrap token without confidentiality (SEAL_ALG %#04x)",
				binary.BigEndian.Uint16(raw[4:6]))
		}
		seq, err := rc4Seq(key, raw, fromClient)
		if err != nil {
			return false, err
		}
		ciph, err := gssCipher(key, fromClient, false)
		if err != nil {
			return false, err
		}
		ok, err := ciph.UnwrapEx(context.Background(), uint64(seq), forSign, [][]byte{stub}, append([]byte(nil), raw...))
		if err != nil {
			return false, fmt.Errorf("kerberos unwrap: %v: %w", err, ErrMalformed)
		}
		return ok, nil
	}
	return false, fmt.Errorf("kerberos: %s: %w", KerberosETypeName(key.KeyType), ErrKerberosUnsupported)
}

// verifyMIC recomputes a MIC token over forSign and compares.
func (c *KerberosContext) verifyMIC(key types.EncryptionKey, fromClient bool, forSign [][]byte, tok []byte) (bool, error) {
	switch key.KeyType {
	case KerberosETypeAES128, KerberosETypeAES256:
		if len(tok) < cfxHeaderLen+cfxChecksumLen {
			return false, errAt(layerKerberos, 0, ErrTruncated, "MIC token of %d bytes", len(tok))
		}
		if tok[0] != 0x04 || tok[1] != 0x04 {
			return false, errAt(layerKerberos, 0, ErrMalformed, "MIC token id %#02x%02x", tok[0], tok[1])
		}
		if err := cfxDirection(tok[2], fromClient); err != nil {
			return false, err
		}
		ciph, err := gssCipher(key, fromClient, tok[2]&cfxFlagAcceptorSK != 0)
		if err != nil {
			return false, err
		}
		want, err := ciph.MakeSignature(context.Background(), binary.BigEndian.Uint64(tok[8:16]), forSign)
		if err != nil {
			return false, fmt.Errorf("kerberos MIC: %v: %w", err, ErrMalformed)
		}
		return hmac.Equal(want, tok[:cfxHeaderLen+cfxChecksumLen]), nil
	case KerberosETypeRC4:
		raw, err := rc4Token(tok, rc4MICTokenLen, 0x0101)
		if err != nil {
			return false, err
		}
		seq, err := rc4Seq(key, raw, fromClient)
		if err != nil {
			return false, err
		}
		ciph, err := gssCipher(key, fromClient, false)
		if err != nil {
			return false, err
		}
		want, err := ciph.MakeSignature(context.Background(), uint64(seq), forSign)
		if err != nil || len(want) < rc4MICTokenLen {
			return false, fmt.Errorf("kerberos MIC: %v: %w", err, ErrMalformed)
		}
		return hmac.Equal(want[len(want)-rc4MICTokenLen:], raw), nil
	}
	return false, fmt.Errorf("kerberos: %s: %w", KerberosETypeName(key.KeyType), ErrKerberosUnsupported)
}

// cfxWrapLen checks an RFC 4121 wrap token's header and returns the length
// of the token proper: header, then the rotated EC filler, encrypted
// header and checksum, and the confounder (DCE style rotates by RRC+EC;
// the sealed stub follows in the PDU, not in the token).
func cfxWrapLen(tok []byte, fromClient bool) (int, error) {
	if len(tok) < cfxHeaderLen {
		return 0, errAt(layerKerberos, 0, ErrTruncated, "wrap token of %d bytes", len(tok))
	}
	if tok[0] != 0x05 || tok[1] != 0x04 {
		return 0, errAt(layerKerberos, 0, ErrMalformed, "wrap token id %#02x%02x", tok[0], tok[1])
	}
	if tok[2]&cfxFlagSealed == 0 {
		return 0, errAt(layerKerberos, 2, ErrMalformed, "wrap token without confidentiality")
	}
	if err := cfxDirection(tok[2], fromClient); err != nil {
		return 0, err
	}
	if tok[3] != 0xff {
		return 0, errAt(layerKerberos, 3, ErrMalformed, "filler %#02x", tok[3])
	}
	ec, rrc := int(binary.BigEndian.Uint16(tok[4:])), int(binary.BigEndian.Uint16(tok[6:]))
	if ec > cfxMaxECRRC || rrc > cfxMaxECRRC {
		return 0, errAt(layerKerberos, 4, ErrLimit, "EC %d RRC %d", ec, rrc)
	}
	// The rotated-out part must hold at least the encrypted header and the
	// checksum, or the token cannot be DCE style.
	if ec+rrc < cfxHeaderLen+cfxChecksumLen {
		return 0, errAt(layerKerberos, 4, ErrMalformed, "EC %d + RRC %d leaves no room for header and checksum", ec, rrc)
	}
	n := cfxHeaderLen + ec + rrc + cfxConfounderLen
	if len(tok) < n {
		return 0, errAt(layerKerberos, 0, ErrTruncated, "wrap token of %d bytes, EC %d RRC %d need %d", len(tok), ec, rrc, n)
	}
	return n, nil
}

// cfxDirection checks the SentByAcceptor flag against the direction.
func cfxDirection(flags byte, fromClient bool) error {
	if (flags&cfxFlagAcceptor != 0) == fromClient {
		return errAt(layerKerberos, 2, ErrMalformed, "token flags %#02x do not match the direction", flags)
	}
	return nil
}

// rc4Token strips the optional GSS framing (60 len OID) DCE style keeps
// on RFC 4757 tokens, and checks the TOK_ID and SGN_ALG.
func rc4Token(tok []byte, n int, tokID uint16) ([]byte, error) {
	if len(tok) > 0 && tok[0] == 0x60 {
		// [APPLICATION 0] with a length that, in DCE style, may count the
		// sealed data too: do not trust it, only the OID after it.
		i := 2
		if len(tok) > 1 && tok[1]&0x80 != 0 {
			i += int(tok[1] & 0x7f)
		}
		if i+len(derKerberos5) > len(tok) || !bytesEqualAny(tok[i:i+len(derKerberos5)], derKerberos5, derMSKerberos) {
			return nil, errAt(layerKerberos, 0, ErrMalformed, "RC4 token: GSS header without the Kerberos OID")
		}
		tok = tok[i+len(derKerberos5):]
	}
	if len(tok) < n {
		return nil, errAt(layerKerberos, 0, ErrTruncated, "RC4 token of %d bytes, need %d", len(tok), n)
	}
	if id := binary.BigEndian.Uint16(tok); id != tokID {
		return nil, errAt(layerKerberos, 0, ErrMalformed, "RC4 token id %#04x, want %#04x", id, tokID)
	}
	if alg := binary.BigEndian.Uint16(tok[2:]); alg != rfc4757.SignAlgorithmHMAC {
		return nil, errAt(layerKerberos, 2, ErrMalformed, "RC4 token SGN_ALG %#04x", alg)
	}
	return tok[:n], nil
}

func bytesEqualAny(b []byte, cands ...[]byte) bool {
	for _, c := range cands {
		if string(b) == string(c) {
			return true
		}
	}
	return false
}

// rc4Seq decrypts SND_SEQ (RFC 4757 7.2: RC4 under HMAC(HMAC(K, 0),
// SGN_CKSUM)) and checks its direction bytes: zero from the initiator,
// 0xffffffff from the acceptor.
func rc4Seq(key types.EncryptionKey, raw []byte, fromClient bool) (uint32, error) {
	var seq [8]byte
	copy(seq[:], raw[8:16])
	if err := rfc4757.XORSequenceNumber(key.KeyValue, raw[16:24], seq[:]); err != nil {
		return 0, fmt.Errorf("kerberos RC4 sequence number: %v: %w", err, ErrMalformed)
	}
	dir := binary.BigEndian.Uint32(seq[4:])
	if fromClient && dir != 0 || !fromClient && dir != 0xffffffff {
		// A wrong key gives random direction bytes: that is a checksum
		// failure, not a malformed token.
		return 0, ErrKerberosBadChecksum
	}
	return binary.BigEndian.Uint32(seq[:4]), nil
}
