"""krb_accept: the Kerberos acceptor of the lab server (pcaps/gen/tsch_lab.py).

What a Windows server does with Kerberos on a DCE-RPC association, enough
for real clients to seal their calls to the lab:
  * accept an AP-REQ (SPNEGO NegTokenInit, GSS-framed, or DCE-style raw):
    open the ticket with the service keys of a keytab (every key of the
    ticket's enctype is tried, as a keytab holds one principal name per
    account but the account has many SPNs), then the authenticator;
  * answer with a DCE-style AP-REP (no GSS framing) carrying a fresh
    acceptor subkey and the acceptor's initial sequence number, and check
    the client's third leg (its AP-REP echo, in alter_context or auth3);
  * wrap/unwrap RPC stubs with the acceptor subkey: RFC 4121 CFX for AES
    (DCE style: EC 16, RRC 28, rotation by RRC+EC, 76-byte verifier) and
    RFC 4757 for RC4-HMAC (45-byte verifier), with or without DCE-RPC header
    signing (the PDU header and sec_trailer are signed, not encrypted).

Crypto and ASN.1 come from Debian's impacket 0.10 (impacket.krb5.crypto,
impacket.krb5.asn1); impacket 0.10's gssapi module cannot sign headers and
has no acceptor side, so the token layouts are written here from the RFCs.
"""

import datetime
import hashlib
import hmac
import os
import struct

from Cryptodome.Cipher import ARC4
from pyasn1.codec.der import decoder, encoder
from pyasn1.type.univ import noValue

from impacket.krb5 import constants
from impacket.krb5.asn1 import AP_REQ, AP_REP, EncTicketPart, Authenticator, EncAPRepPart
from impacket.krb5.crypto import Key, _enctype_table, _AESEnctype
from impacket.krb5.keytab import Keytab
from impacket.spnego import SPNEGO_NegTokenInit, SPNEGO_NegTokenResp, TypesMech

KRB5_OID_DER = bytes.fromhex("06092a864886f712010202")  # 1.2.840.113554.1.2.2
MS_KRB5_OID = TypesMech["MS KRB5 - Microsoft Kerberos 5"]
KRB5_OID = TypesMech["KRB5 - Kerberos 5"]
GSS_C_DCE_STYLE = 0x1000

AES256, AES128, RC4 = 18, 17, 23
ENCTYPE_NAMES = {AES256: "aes256-cts-hmac-sha1-96", AES128: "aes128-cts-hmac-sha1-96", RC4: "rc4-hmac"}

# RFC 4121 key usages.
KG_USAGE_ACCEPTOR_SEAL, KG_USAGE_INITIATOR_SEAL = 22, 24
CFX_SENT_BY_ACCEPTOR, CFX_SEALED, CFX_ACCEPTOR_SUBKEY = 1, 2, 4
CFX_EC, CFX_RRC = 16, 28  # what Windows (and go-msrpc) use in DCE style
RC4_GSS_HEADER = b"\x60\x2b" + KRB5_OID_DER  # 13 bytes: 43 = OID + 32-byte token, no data


class KrbError(Exception):
    pass


def load_keytab(path):
    """All (principal, kvno, enctype, key) entries of an MIT keytab."""
    kt = Keytab.loadFile(path)
    out = []
    for e in kt.entries:
        p = e.main_part["principal"]
        name = "/".join(c["data"].decode() for c in p.components) + "@" + p.realm["data"].decode()
        kb = e.main_part["keyblock"]
        out.append((name, e.main_part["vno8"], int(kb["keytype"]), bytes(kb["keyvalue"]["data"])))
    return out


def _der_len(buf, i):
    n = buf[i]
    if n < 0x80:
        return n, i + 1
    k = n & 0x7F
    return int.from_bytes(buf[i + 1:i + 1 + k], "big"), i + 1 + k


def unframe_ap_req(token):
    """Returns (ap_req_der, spnego) from a SPNEGO NegTokenInit, an RFC 1964 framed
    token or a bare (DCE-style) AP-REQ."""
    if token[:1] == b"\x60":
        _, i = _der_len(token, 1)
        if token[i:i + len(KRB5_OID_DER)] == KRB5_OID_DER:
            i += len(KRB5_OID_DER)
            if token[i:i + 2] != b"\x01\x00":
                raise KrbError("GSS token is not an AP-REQ")
            return token[i + 2:], False
        init = SPNEGO_NegTokenInit(token)
        mechs = init["MechTypes"]
        if not mechs or mechs[0] not in (MS_KRB5_OID, KRB5_OID):
            raise KrbError("SPNEGO does not offer Kerberos first")
        inner, _ = unframe_ap_req(init["MechToken"])
        return inner, mechs[0]
    if token[:1] == b"\x6e":
        return token, False
    raise KrbError("not a Kerberos token")


class KrbContext:
    """One accepted security context: identity, keys, sequence numbers."""

    def __init__(self):
        self.cname = self.crealm = self.sname = None
        self.ticket_enctype = self.ticket_kvno = None
        self.key_principal = None
        self.session_key = None  # impacket Key of the ticket
        self.subkey = None  # acceptor subkey: seals everything
        self.initiator_subkey = None
        self.dce_style = False
        self.gss_flags = 0
        self.client_seq = 0
        self.server_seq = 0
        self.ap_rep_seq = 0
        self.completed = False
        self.spnego = False
        self.header_sign = False


class KrbAcceptor:
    def __init__(self, keytab_path):
        self.keys = load_keytab(keytab_path)

    def accept(self, token):
        """Opens an AP-REQ; returns (ctx, reply token for the bind_ack)."""
        ap_der, spnego = unframe_ap_req(token)
        ap_req = decoder.decode(ap_der, asn1Spec=AP_REQ())[0]
        tkt = ap_req["ticket"]
        etype = int(tkt["enc-part"]["etype"])
        kvno = int(tkt["enc-part"]["kvno"]) if tkt["enc-part"]["kvno"].hasValue() else None
        ctx = KrbContext()
        ctx.spnego = spnego
        ctx.sname = "/".join(str(c) for c in tkt["sname"]["name-string"]) + "@" + str(tkt["realm"])
        ctx.ticket_enctype, ctx.ticket_kvno = etype, kvno
        cipher = _enctype_table.get(etype)
        if cipher is None:
            raise KrbError("ticket enctype %d unsupported" % etype)
        enc_ticket = None
        # Every key of the ticket's enctype, a matching kvno first.
        for name, vno, kt_etype, key in sorted(self.keys, key=lambda k: k[1] != kvno):
            if kt_etype != etype:
                continue
            try:
                plain = cipher.decrypt(Key(etype, key), 2, bytes(tkt["enc-part"]["cipher"]))
            except Exception:
                continue
            enc_ticket = decoder.decode(plain, asn1Spec=EncTicketPart())[0]
            ctx.key_principal = name
            break
        if enc_ticket is None:
            raise KrbError("no keytab key opens the ticket for %s (enctype %d)" % (ctx.sname, etype))
        sk = enc_ticket["key"]
        ctx.session_key = Key(int(sk["keytype"]), bytes(sk["keyvalue"]))
        ctx.cname = "/".join(str(c) for c in enc_ticket["cname"]["name-string"])
        ctx.crealm = str(enc_ticket["crealm"])
        acipher = _enctype_table[ctx.session_key.enctype]
        auth_plain = acipher.decrypt(ctx.session_key, 11, bytes(ap_req["authenticator"]["cipher"]))
        auth = decoder.decode(auth_plain, asn1Spec=Authenticator())[0]
        if str(auth["crealm"]) != ctx.crealm or \
                "/".join(str(c) for c in auth["cname"]["name-string"]) != ctx.cname:
            raise KrbError("authenticator names another client than the ticket")
        if auth["cksum"].hasValue() and int(auth["cksum"]["cksumtype"]) == 0x8003:
            ck = bytes(auth["cksum"]["checksum"])
            if len(ck) >= 24:
                ctx.gss_flags = struct.unpack_from("<I", ck, 20)[0]
        ctx.dce_style = bool(ctx.gss_flags & GSS_C_DCE_STYLE)
        ctx.client_seq = int(auth["seq-number"]) if auth["seq-number"].hasValue() else 0
        sub_etype = ctx.session_key.enctype
        if auth["subkey"].hasValue():
            ctx.initiator_subkey = Key(int(auth["subkey"]["keytype"]), bytes(auth["subkey"]["keyvalue"]))
            sub_etype = ctx.initiator_subkey.enctype
        # Windows answers with its own subkey and a random initial sequence number.
        scipher = _enctype_table[sub_etype]
        ctx.subkey = Key(sub_etype, scipher.random_to_key(os.urandom(scipher.seedsize)).contents)
        ctx.server_seq = ctx.ap_rep_seq = struct.unpack("<I", os.urandom(4))[0] & 0x7FFFFFFF

        rep = EncAPRepPart()
        rep["ctime"] = str(auth["ctime"])
        rep["cusec"] = int(auth["cusec"])
        rep["subkey"] = noValue
        rep["subkey"]["keytype"] = ctx.subkey.enctype
        rep["subkey"]["keyvalue"] = ctx.subkey.contents
        rep["seq-number"] = ctx.ap_rep_seq
        enc = acipher.encrypt(ctx.session_key, 12, encoder.encode(rep), None)
        ap_rep = AP_REP()
        ap_rep["pvno"] = 5
        ap_rep["msg-type"] = int(constants.ApplicationTagNumbers.AP_REP.value)
        ap_rep["enc-part"] = noValue
        ap_rep["enc-part"]["etype"] = ctx.session_key.enctype
        ap_rep["enc-part"]["cipher"] = enc
        raw = encoder.encode(ap_rep)
        if not ctx.dce_style:
            raw = _frame(raw, b"\x02\x00")
        if spnego:
            resp = SPNEGO_NegTokenResp()
            # DCE style: the client's AP-REP echo is still to come.
            resp["NegState"] = b"\x01" if ctx.dce_style else b"\x00"
            resp["SupportedMech"] = spnego
            resp["ResponseToken"] = raw
            raw = resp.getData()
        if not ctx.dce_style:
            ctx.completed = True
        return ctx, raw

    def third_leg(self, ctx, token):
        """The client's DCE-style AP-REP echo: same sequence number, session key.
        Returns the token for an alter_context_resp (SPNEGO accept-completed)."""
        mic = None
        if ctx.spnego:
            fields = negtokenresp_fields(token)
            token, mic = fields.get(0xA2), fields.get(0xA3)
            token = _unwrap_octets(token)
        ap_rep = decoder.decode(token, asn1Spec=AP_REP())[0]
        cipher = _enctype_table[int(ap_rep["enc-part"]["etype"])]
        plain = cipher.decrypt(ctx.session_key, 12, bytes(ap_rep["enc-part"]["cipher"]))
        part = decoder.decode(plain, asn1Spec=EncAPRepPart())[0]
        if int(part["seq-number"]) != ctx.ap_rep_seq:
            raise KrbError("third leg seq-number %d, sent %d" % (int(part["seq-number"]), ctx.ap_rep_seq))
        ctx.completed = True
        if mic is not None:
            # The client's SPNEGO mechListMIC is a GSS MIC token: it takes
            # one initiator sequence number before the first request.
            ctx.client_seq = (ctx.client_seq + 1) & 0xFFFFFFFF
            ctx.client_mic = True
        if ctx.spnego:
            resp = SPNEGO_NegTokenResp()
            resp["NegState"] = b"\x00"
            return resp.getData()
        return b""


def negtokenresp_fields(token):
    """The context-tagged fields of a SPNEGO NegTokenResp (a1 { 30 { a0..a3 } }) by tag."""
    if token[:1] != b"\xa1":
        raise KrbError("not a NegTokenResp")
    _, i = _der_len(token, 1)
    if token[i:i + 1] != b"\x30":
        raise KrbError("NegTokenResp is not a SEQUENCE")
    n, i = _der_len(token, i + 1)
    end = i + n
    out = {}
    while i < end:
        tag = token[i]
        n, j = _der_len(token, i + 1)
        out[tag] = token[j:j + n]
        i = j + n
    return out


def _unwrap_octets(v):
    """The contents of a DER OCTET STRING."""
    if v is None or v[:1] != b"\x04":
        raise KrbError("no responseToken")
    n, i = _der_len(v, 1)
    return v[i:i + n]


def _frame(inner, tok_id):
    body = KRB5_OID_DER + tok_id + inner
    return b"\x60" + _enc_len(len(body)) + body


def _enc_len(n):
    if n < 0x80:
        return bytes([n])
    b = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(b)]) + b


# ---------------------------------------------------------------------------
# Per-message tokens, DCE style. `pre` and `post` are the sign-only parts
# (PDU header up to the stub, and the sec_trailer) when header signing is on,
# empty otherwise.
# ---------------------------------------------------------------------------

def _aes_keys(key, usage):
    c = _enctype_table[key.enctype]
    ke = c.derive(key, struct.pack(">IB", usage, 0xAA))
    ki = c.derive(key, struct.pack(">IB", usage, 0x55))
    return c, ke, ki


def _rotate_right(b, n):
    n %= len(b)
    return b[len(b) - n:] + b[:len(b) - n]


def cfx_wrap(key, seq, stub, pre, post, acceptor=True):
    """RFC 4121 wrap token, DCE style. Returns (sealed stub, verifier)."""
    usage = KG_USAGE_ACCEPTOR_SEAL if acceptor else KG_USAGE_INITIATOR_SEAL
    c, ke, ki = _aes_keys(key, usage)
    flags = CFX_SEALED | CFX_ACCEPTOR_SUBKEY | (CFX_SENT_BY_ACCEPTOR if acceptor else 0)
    ec = CFX_EC
    hdr0 = struct.pack(">HBBHHQ", 0x0504, flags, 0xFF, ec, 0, seq)
    confounder = os.urandom(16)
    filler = b"\xff" * ec
    mac = hmac.new(ki.contents, confounder + pre + stub + post + filler + hdr0, hashlib.sha1).digest()[:12]
    ct = c.basic_encrypt(ke, confounder + stub + filler + hdr0) + mac
    ct = _rotate_right(ct, ec + CFX_RRC)
    n = ec + CFX_RRC + 16  # moved tail (filler, E(header), mac) plus E(confounder)
    hdr = struct.pack(">HBBHHQ", 0x0504, flags, 0xFF, ec, CFX_RRC, seq)
    return ct[n:], hdr + ct[:n]


def cfx_unwrap(key, stub, verifier, pre, post, acceptor=False):
    """Opens an RFC 4121 wrap token sent by the initiator (acceptor=False).
    Returns (plain stub, seq). Tries the DCE rotation by RRC+EC, then by RRC."""
    usage = KG_USAGE_ACCEPTOR_SEAL if acceptor else KG_USAGE_INITIATOR_SEAL
    c, ke, ki = _aes_keys(key, usage)
    tok_id, flags, _f, ec, rrc, seq = struct.unpack(">HBBHHQ", verifier[:16])
    if tok_id != 0x0504 or not flags & CFX_SEALED:
        raise KrbError("not a sealed CFX wrap token")
    rotated = verifier[16:] + stub
    for rot in (rrc + ec, rrc):
        ct = rotated[rot % len(rotated):] + rotated[:rot % len(rotated)]
        body, mac = ct[:-12], ct[-12:]
        plain = c.basic_decrypt(ke, body)
        confounder, rest = plain[:16], plain[16:]
        data, filler_hdr = rest[:len(rest) - ec - 16], rest[len(rest) - ec - 16:]
        want = hmac.new(ki.contents, confounder + pre + data + post + filler_hdr, hashlib.sha1).digest()[:12]
        if hmac.compare_digest(want, mac):
            return data, seq
    raise KrbError("CFX wrap token integrity check failed")


def _rc4_keys(key):
    ksign = hmac.new(key.contents, b"signaturekey\x00", hashlib.md5).digest()
    klocal = bytes(b ^ 0xF0 for b in key.contents)
    return ksign, klocal


def rc4_wrap(key, seq, stub, pre, post, acceptor=True):
    """RFC 4757 wrap token, DCE style (no padding, 45-byte verifier)."""
    ksign, klocal = _rc4_keys(key)
    tok8 = struct.pack("<HHHH", 0x0102, 0x0011, 0x0010, 0xFFFF)
    snd_seq = struct.pack(">I", seq) + (b"\xff" * 4 if acceptor else b"\x00" * 4)
    confounder = os.urandom(8)
    md5 = hashlib.md5(struct.pack("<I", 13) + tok8 + confounder + pre + stub + post).digest()
    cksum = hmac.new(ksign, md5, hashlib.md5).digest()[:8]
    kcrypt = hmac.new(hmac.new(klocal, struct.pack("<I", 0), hashlib.md5).digest(), struct.pack(">I", seq),
                      hashlib.md5).digest()
    rc4 = ARC4.new(kcrypt)
    enc_conf = rc4.encrypt(confounder)
    enc_stub = rc4.encrypt(stub)
    kseq = hmac.new(hmac.new(key.contents, struct.pack("<I", 0), hashlib.md5).digest(), cksum, hashlib.md5).digest()
    enc_seq = ARC4.new(kseq).encrypt(snd_seq)
    return enc_stub, RC4_GSS_HEADER + tok8 + enc_seq + cksum + enc_conf


def rc4_unwrap(key, stub, verifier, pre, post, acceptor=False):
    """Opens an RFC 4757 wrap token sent by the initiator. Returns (plain stub, seq)."""
    if verifier[:2] != b"\x60\x2b" or verifier[2:13] != KRB5_OID_DER:
        raise KrbError("not a framed RC4 wrap token")
    tok = verifier[13:]
    tok8, enc_seq, cksum, enc_conf = tok[:8], tok[8:16], tok[16:24], tok[24:32]
    ksign, klocal = _rc4_keys(key)
    kseq = hmac.new(hmac.new(key.contents, struct.pack("<I", 0), hashlib.md5).digest(), cksum, hashlib.md5).digest()
    snd_seq = ARC4.new(kseq).decrypt(enc_seq)
    want_dir = b"\xff" * 4 if acceptor else b"\x00" * 4
    if snd_seq[4:] != want_dir:
        raise KrbError("RC4 wrap token direction bytes %s" % snd_seq[4:].hex())
    kcrypt = hmac.new(hmac.new(klocal, struct.pack("<I", 0), hashlib.md5).digest(), snd_seq[:4],
                      hashlib.md5).digest()
    rc4 = ARC4.new(kcrypt)
    confounder = rc4.decrypt(enc_conf)
    plain = rc4.decrypt(stub)
    md5 = hashlib.md5(struct.pack("<I", 13) + tok8 + confounder + pre + plain + post).digest()
    if not hmac.compare_digest(hmac.new(ksign, md5, hashlib.md5).digest()[:8], cksum):
        raise KrbError("RC4 wrap token checksum failed")
    return plain, struct.unpack(">I", snd_seq[:4])[0]


def wrap(ctx, stub, pre, post):
    """Seals a response stub with the acceptor subkey; advances the acceptor sequence."""
    f = rc4_wrap if ctx.subkey.enctype == RC4 else cfx_wrap
    out = f(ctx.subkey, ctx.server_seq, stub, pre, post)
    ctx.server_seq = (ctx.server_seq + 1) & 0xFFFFFFFF
    return out


def unwrap(ctx, stub, verifier, pre, post):
    """Unseals a request stub from the initiator; checks its sequence number."""
    f = rc4_unwrap if ctx.subkey.enctype == RC4 else cfx_unwrap
    plain, seq = f(ctx.subkey, stub, verifier, pre, post)
    if seq != ctx.client_seq:
        raise KrbError("request sequence %d, expected %d" % (seq, ctx.client_seq))
    ctx.client_seq = (ctx.client_seq + 1) & 0xFFFFFFFF
    return plain


def verifier_len(ctx):
    return 45 if ctx.subkey.enctype == RC4 else 76


def describe(ctx):
    """The context as the lab's event log records it (lab keys only)."""
    return {"cname": ctx.cname, "crealm": ctx.crealm, "sname": ctx.sname,
            "ticket_enctype": ENCTYPE_NAMES.get(ctx.ticket_enctype, ctx.ticket_enctype),
            "ticket_kvno": ctx.ticket_kvno, "keytab_principal": ctx.key_principal,
            "session_key_enctype": ENCTYPE_NAMES.get(ctx.session_key.enctype, ctx.session_key.enctype),
            "session_key": ctx.session_key.contents.hex(),
            "initiator_subkey": ctx.initiator_subkey.contents.hex() if ctx.initiator_subkey else None,
            "acceptor_subkey_enctype": ENCTYPE_NAMES.get(ctx.subkey.enctype, ctx.subkey.enctype),
            "acceptor_subkey": ctx.subkey.contents.hex(), "gss_flags": "0x%x" % ctx.gss_flags,
            "dce_style": ctx.dce_style, "ap_rep_seq": ctx.ap_rep_seq, "spnego": bool(ctx.spnego),
            "header_signing": ctx.header_sign}


def session_key_from_exchange(keytab_path, init_token, resp_token):
    """What a passive observer with the keytab derives from one SPNEGO
    Kerberos exchange (session setup request and response blobs): the client
    principal and the GSS session key (acceptor subkey, else initiator
    subkey, else ticket session key). Used by the SMB3 facts."""
    acc = KrbAcceptor(keytab_path)
    ap_der, _ = unframe_ap_req(init_token)
    ap_req = decoder.decode(ap_der, asn1Spec=AP_REQ())[0]
    tkt = ap_req["ticket"]
    etype = int(tkt["enc-part"]["etype"])
    enc_ticket = None
    for _name, _vno, kt_etype, key in acc.keys:
        if kt_etype != etype:
            continue
        try:
            plain = _enctype_table[etype].decrypt(Key(etype, key), 2, bytes(tkt["enc-part"]["cipher"]))
        except Exception:
            continue
        enc_ticket = decoder.decode(plain, asn1Spec=EncTicketPart())[0]
        break
    if enc_ticket is None:
        raise KrbError("no keytab key opens the ticket")
    sk = Key(int(enc_ticket["key"]["keytype"]), bytes(enc_ticket["key"]["keyvalue"]))
    c = _enctype_table[sk.enctype]
    auth = decoder.decode(c.decrypt(sk, 11, bytes(ap_req["authenticator"]["cipher"])), asn1Spec=Authenticator())[0]
    key = sk
    if auth["subkey"].hasValue():
        key = Key(int(auth["subkey"]["keytype"]), bytes(auth["subkey"]["keyvalue"]))
    rep = negtokenresp_fields(resp_token).get(0xA2)
    if rep is not None:
        rep = _unwrap_octets(rep)
        if rep[:1] == b"\x60":  # GSS framing, token id 02 00
            _, i = _der_len(rep, 1)
            rep = rep[i + len(KRB5_OID_DER) + 2:]
        ap_rep = decoder.decode(rep, asn1Spec=AP_REP())[0]
        part = decoder.decode(c.decrypt(sk, 12, bytes(ap_rep["enc-part"]["cipher"])), asn1Spec=EncAPRepPart())[0]
        if part["subkey"].hasValue():
            key = Key(int(part["subkey"]["keytype"]), bytes(part["subkey"]["keyvalue"]))
    cname = "/".join(str(x) for x in enc_ticket["cname"]["name-string"])
    return cname, str(enc_ticket["crealm"]), key.contents
