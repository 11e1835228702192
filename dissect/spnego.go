package dissect

import (
	"bytes"
	"encoding/asn1"
	"strings"
)

// SPNEGO (RFC 4178) and GSS-API (RFC 2743 3.1) unwrapping, enough to find
// the NTLMSSP token or the Kerberos AP-REQ in an SMB session-setup security
// blob or a DCE-RPC auth verifier. Parsing uses encoding/asn1, which checks
// every length against its input; malformed blobs fall back to a byte
// search so that a sloppy encoder does not hide an NTLM exchange.

// Mechanism OIDs found in security blobs.
var (
	oidSPNEGO     = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 2}
	oidNTLMSSP    = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 311, 2, 2, 10}
	oidKerberos5  = asn1.ObjectIdentifier{1, 2, 840, 113554, 1, 2, 2}
	oidMSKerberos = asn1.ObjectIdentifier{1, 2, 840, 48018, 1, 2, 2}
)

// maxSPNEGOElements bounds the walk over a SEQUENCE's members; NegTokenInit2
// has five, Kerberos structures fewer than ten.
const maxSPNEGOElements = 16

// DER encodings of the two Kerberos OIDs, for the fallback search.
var (
	derKerberos5  = []byte{0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x12, 0x01, 0x02, 0x02}
	derMSKerberos = []byte{0x06, 0x09, 0x2a, 0x86, 0x48, 0x82, 0xf7, 0x12, 0x01, 0x02, 0x02}
)

// KerberosInfo is what a security blob says about a Kerberos exchange.
type KerberosInfo struct {
	Realm string // realm of the service ticket
	SPN   string // service principal name (sname components joined by "/")
	// ServiceTicket is true when the blob carried an AP-REQ whose ticket was
	// decoded; AP-REP and KRB-ERROR tokens leave it false.
	ServiceTicket bool
}

// asn1Next decodes the next TLV of b.
func spnegoNext(b []byte) (asn1.RawValue, []byte, bool) {
	var rv asn1.RawValue
	rest, err := asn1.Unmarshal(b, &rv)
	if err != nil {
		return rv, nil, false
	}
	return rv, rest, true
}

// asn1Members splits a constructed value's contents into its members,
// keyed by context-specific tag; other classes are skipped.
func asn1Members(contents []byte) (map[int]asn1.RawValue, bool) {
	out := make(map[int]asn1.RawValue, 4)
	for i := 0; len(contents) > 0; i++ {
		if i >= maxSPNEGOElements {
			return nil, false
		}
		rv, rest, ok := spnegoNext(contents)
		if !ok {
			return nil, false
		}
		if rv.Class == asn1.ClassContextSpecific {
			out[rv.Tag] = rv
		}
		contents = rest
	}
	return out, true
}

// gssUnwrap splits a GSS-API InitialContextToken ([APPLICATION 0] { OID,
// inner }) into its mechanism and the inner token bytes.
func gssUnwrap(b []byte) (asn1.ObjectIdentifier, []byte, bool) {
	rv, _, ok := spnegoNext(b)
	if !ok || rv.Class != asn1.ClassApplication || rv.Tag != 0 || !rv.IsCompound {
		return nil, nil, false
	}
	var oid asn1.ObjectIdentifier
	inner, err := asn1.Unmarshal(rv.Bytes, &oid)
	if err != nil {
		return nil, nil, false
	}
	return oid, inner, true
}

// spnegoToken returns the mechanism token a NegotiationToken carries: the
// mechToken [2] of NegTokenInit [0] or the responseToken [2] of
// NegTokenResp [1] (both sit at context tag 2, RFC 4178 4.2). b is either a
// GSS-wrapped NegTokenInit or a bare NegTokenResp.
func spnegoToken(b []byte) ([]byte, bool) {
	if oid, inner, ok := gssUnwrap(b); ok {
		if !oid.Equal(oidSPNEGO) {
			// A bare GSS token of another mechanism: hand back the whole blob,
			// the callers look at the mechanism themselves.
			return nil, false
		}
		b = inner
	}
	choice, _, ok := spnegoNext(b)
	if !ok || choice.Class != asn1.ClassContextSpecific || (choice.Tag != 0 && choice.Tag != 1) {
		return nil, false
	}
	seq, _, ok := spnegoNext(choice.Bytes)
	if !ok || seq.Tag != asn1.TagSequence || !seq.IsCompound {
		return nil, false
	}
	members, ok := asn1Members(seq.Bytes)
	if !ok {
		return nil, false
	}
	tok, ok := members[2]
	if !ok {
		return nil, true
	}
	var octets []byte
	if _, err := asn1.Unmarshal(tok.Bytes, &octets); err != nil {
		return nil, false
	}
	return octets, true
}

// FindNTLMSSP returns the NTLMSSP message inside blob: blob itself when it is
// a raw NTLMSSP message, the token of a GSS-API/SPNEGO wrapper, or, for blobs
// the ASN.1 parser rejects, whatever follows the first "NTLMSSP\x00". The
// result aliases blob; nil when there is none.
func FindNTLMSSP(blob []byte) []byte {
	if bytes.HasPrefix(blob, ntlmSignature) {
		return blob
	}
	if oid, inner, ok := gssUnwrap(blob); ok && oid.Equal(oidNTLMSSP) {
		if bytes.HasPrefix(inner, ntlmSignature) {
			return inner
		}
	}
	tok, ok := spnegoToken(blob)
	if ok {
		if bytes.HasPrefix(tok, ntlmSignature) {
			return tok
		}
		// Well-formed SPNEGO without an NTLM token (Kerberos, or a final
		// mechListMIC-only leg): a stray signature further on is not ours.
		return nil
	}
	if i := bytes.Index(blob, ntlmSignature); i >= 0 {
		return blob[i:]
	}
	return nil
}

// FindKerberos reports the Kerberos exchange in an SPNEGO or GSS-API blob:
// for an AP-REQ the service ticket's realm and SPN. It returns nil when the
// blob holds no Kerberos token. The token is found as FindKerberosMessage
// finds it.
func FindKerberos(blob []byte) *KerberosInfo {
	switch t, msg := FindKerberosMessage(blob); t {
	case KerberosAPReq:
		return APReqInfo(msg)
	case KerberosAPRep, KerberosErrorMsg:
		return &KerberosInfo{}
	}
	return nil
}

// APReqInfo reports the service ticket's realm and SPN of an AP-REQ
// message, as FindKerberosMessage returns it, or nil when it is malformed.
func APReqInfo(msg []byte) *KerberosInfo {
	ki, ok := parseAPReq(msg)
	if !ok {
		return nil
	}
	return ki
}

// parseAPReq reads the ticket out of AP-REQ ::= [APPLICATION 14] SEQUENCE
// { pvno[0], msg-type[1], ap-options[2], ticket[3] Ticket, authenticator[4] }
// (RFC 4120 5.5.1); Ticket ::= [APPLICATION 1] SEQUENCE { tkt-vno[0],
// realm[1], sname[2] PrincipalName, enc-part[3] } (5.3).
func parseAPReq(b []byte) (*KerberosInfo, bool) {
	app, _, ok := spnegoNext(b)
	if !ok || app.Class != asn1.ClassApplication || app.Tag != 14 {
		return nil, false
	}
	req, ok := explicitSequence(app.Bytes)
	if !ok {
		return nil, false
	}
	tkt, ok := req[3]
	if !ok {
		return nil, false
	}
	tapp, _, ok := spnegoNext(tkt.Bytes)
	if !ok || tapp.Class != asn1.ClassApplication || tapp.Tag != 1 {
		return nil, false
	}
	t, ok := explicitSequence(tapp.Bytes)
	if !ok {
		return nil, false
	}
	ki := &KerberosInfo{ServiceTicket: true}
	if r, ok := t[1]; ok {
		if s, ok := krbString(r.Bytes); ok {
			ki.Realm = s
		}
	}
	if sn, ok := t[2]; ok {
		ki.SPN = krbPrincipal(sn.Bytes)
	}
	return ki, true
}

// explicitSequence decodes a SEQUENCE whose members are explicitly tagged.
func explicitSequence(b []byte) (map[int]asn1.RawValue, bool) {
	seq, _, ok := spnegoNext(b)
	if !ok || seq.Tag != asn1.TagSequence || !seq.IsCompound {
		return nil, false
	}
	return asn1Members(seq.Bytes)
}

// krbPrincipal joins PrincipalName ::= SEQUENCE { name-type[0],
// name-string[1] SEQUENCE OF KerberosString } with "/".
func krbPrincipal(b []byte) string {
	pn, ok := explicitSequence(b)
	if !ok {
		return ""
	}
	ns, ok := pn[1]
	if !ok {
		return ""
	}
	seq, _, ok := spnegoNext(ns.Bytes)
	if !ok || seq.Tag != asn1.TagSequence {
		return ""
	}
	var parts []string
	for rest, i := seq.Bytes, 0; len(rest) > 0 && i < maxSPNEGOElements; i++ {
		rv, next, ok := spnegoNext(rest)
		if !ok || rv.Class != asn1.ClassUniversal || rv.IsCompound {
			break
		}
		parts = append(parts, strings.ToValidUTF8(string(rv.Bytes), "\uFFFD"))
		rest = next
	}
	return strings.Join(parts, "/")
}

// krbString reads a KerberosString (GeneralString, tag 27, IA5 in
// practice) without trusting it to be valid UTF-8.
func krbString(b []byte) (string, bool) {
	rv, _, ok := spnegoNext(b)
	if !ok || rv.Class != asn1.ClassUniversal || rv.IsCompound {
		return "", false
	}
	return strings.ToValidUTF8(string(rv.Bytes), "\uFFFD"), true
}

// KerberosMessageType names the Kerberos message a security token carries:
// its ASN.1 APPLICATION tag (RFC 4120 5.10).
type KerberosMessageType int

// Kerberos messages found in security tokens.
const (
	KerberosNone     KerberosMessageType = 0
	KerberosAPReq    KerberosMessageType = 14
	KerberosAPRep    KerberosMessageType = 15
	KerberosErrorMsg KerberosMessageType = 30
)

func (t KerberosMessageType) String() string {
	switch t {
	case KerberosAPReq:
		return "AP-REQ"
	case KerberosAPRep:
		return "AP-REP"
	case KerberosErrorMsg:
		return "KRB-ERROR"
	}
	return "none"
}

// FindKerberosMessage returns the Kerberos message inside a security token
// and its type: blob may be SPNEGO (NegTokenInit or NegTokenResp), a GSS-API
// token (RFC 4121 4.1: OID, TOK_ID, message) or a bare message, as
// DCE-style Kerberos sends it (MS-RPCE auth type 16, or inside SPNEGO with
// auth type 9). The message is exactly one DER element and aliases blob.
// Blobs the strict parser rejects are searched for the Kerberos OID, as
// FindKerberos does.
func FindKerberosMessage(blob []byte) (KerberosMessageType, []byte) {
	tok, ok := spnegoToken(blob)
	if ok && tok == nil {
		return KerberosNone, nil
	}
	if !ok {
		tok = blob
	}
	if oid, inner, wrapped := gssUnwrap(tok); wrapped {
		if !oid.Equal(oidKerberos5) && !oid.Equal(oidMSKerberos) {
			return KerberosNone, nil
		}
		return krbInnerMessage(inner)
	}
	if t, m := krbBareMessage(tok); t != KerberosNone {
		return t, m
	}
	if ok {
		return KerberosNone, nil
	}
	for _, oid := range [][]byte{derKerberos5, derMSKerberos} {
		for rest, i := blob, 0; i < maxSPNEGOElements; i++ {
			at := bytes.Index(rest, oid)
			if at < 0 {
				break
			}
			rest = rest[at+len(oid):]
			if t, m := krbInnerMessage(rest); t != KerberosNone {
				return t, m
			}
		}
	}
	return KerberosNone, nil
}

// krbInnerMessage reads the RFC 4121 4.1 inner token: TOK_ID then the
// message, whose APPLICATION tag must agree with the TOK_ID.
func krbInnerMessage(b []byte) (KerberosMessageType, []byte) {
	if len(b) < 2 || b[1] != 0 {
		return KerberosNone, nil
	}
	want := map[byte]KerberosMessageType{1: KerberosAPReq, 2: KerberosAPRep, 3: KerberosErrorMsg}[b[0]]
	if want == KerberosNone {
		return KerberosNone, nil
	}
	t, m := krbBareMessage(b[2:])
	if t != want {
		return KerberosNone, nil
	}
	return t, m
}

// krbBareMessage recognises one DER element tagged AP-REQ, AP-REP or
// KRB-ERROR.
func krbBareMessage(b []byte) (KerberosMessageType, []byte) {
	rv, _, ok := spnegoNext(b)
	if !ok || rv.Class != asn1.ClassApplication || !rv.IsCompound {
		return KerberosNone, nil
	}
	switch t := KerberosMessageType(rv.Tag); t {
	case KerberosAPReq, KerberosAPRep, KerberosErrorMsg:
		return t, rv.FullBytes
	}
	return KerberosNone, nil
}
