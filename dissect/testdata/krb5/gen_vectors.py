#!/usr/bin/python3
"""Known-answer DCE-RPC PDUs sealed/signed with Kerberos per-message tokens,
made with Impacket (python3-impacket 0.10, Debian) as an implementation
independent of go-msrpc, whose code dissect uses to unseal.

Run from the repository root:  /usr/bin/python3 dissect/testdata/krb5/gen_vectors.py > dissect/testdata/krb5/impacket_vectors.jsonl

Where Impacket has the whole operation (GSSAPI_AES*.GSS_Wrap for the
initiator without header signing, GSSAPI_RC4.GSS_Wrap / GSS_GetMIC in both
directions) it is called as is. The acceptor direction and header signing
(MS-RPCE 2.2.2.12: the checksum also covers the PDU header and sec_trailer)
are assembled here from Impacket's RFC 3961 primitives (derive,
basic_encrypt, the HMAC checksum profiles) following RFC 4121 4.2.4/4.2.6.1
and MS-KILE 3.4.5.4.1. Keys are fixed; Impacket's AES GSS_Wrap draws a
random confounder, so a re-run rewrites those lines with other, equally
valid, vectors.
"""
import json
import random
import struct
import sys

from Cryptodome.Hash import HMAC, SHA
from impacket.krb5 import crypto
from impacket.krb5.gssapi import GSSAPI_AES128, GSSAPI_AES256, GSSAPI_RC4

KRB5_OID = b'\x06\x09\x2a\x86\x48\x86\xf7\x12\x01\x02\x02'


def pdu_parts(from_client, body, auth_type, level, auth_len, pad):
    """24-byte little-endian request/response header and 8-byte sec_trailer."""
    ptype = 0 if from_client else 2
    frag = 24 + len(body) + 8 + auth_len
    hdr = struct.pack('<BBBB4sHHI', 5, 0, ptype, 3, b'\x10\x00\x00\x00', frag, auth_len, 7)
    hdr += struct.pack('<IHH', len(body) - pad, 1, 0 if not from_client else 2)
    trailer = struct.pack('<BBBBI', auth_type, level, pad, 0, 0x4321)
    return hdr, trailer


def cfx_header(tok_id, flags, ec, rrc, seq):
    if tok_id == 0x0404:
        return struct.pack('>HBB', tok_id, flags, 0xff) + b'\xff' * 4 + struct.pack('>Q', seq)
    return struct.pack('>HBBHHQ', tok_id, flags, 0xff, ec, rrc, seq)


def aes_wrap_manual(cls, key, from_client, hdr, body, trailer, header_sign, seq, confounder, acceptor_subkey):
    """RFC 4121 wrap token, DCE style: EC=0 (body is block-aligned), RRC=28,
    rotated by RRC+EC; header signing per MS-KILE 3.4.5.4.1."""
    usage = 24 if from_client else 22
    flags = 0x02 | (0 if from_client else 0x01) | (0x04 if acceptor_subkey else 0)
    ec, rrc = 0, 28
    tok_hdr0 = cfx_header(0x0504, flags, ec, 0, seq)   # RRC is 0 in the encrypted copy
    ki = cls.derive(key, struct.pack('>IB', usage, 0x55))
    ke = cls.derive(key, struct.pack('>IB', usage, 0xAA))
    plain = confounder + body + tok_hdr0
    signed = confounder + (hdr + body + trailer if header_sign else body) + tok_hdr0
    mac = HMAC.new(ki.contents, signed, SHA).digest()[:12]
    ct = cls.basic_encrypt(ke, plain) + mac
    n = (rrc + ec) % len(ct)
    rot = ct[len(ct) - n:] + ct[:len(ct) - n]
    cut = 16 + rrc + ec
    token = cfx_header(0x0504, flags, ec, rrc, seq) + rot[:cut]
    return rot[cut:], token


def aes_mic_manual(cksum, key, from_client, data, seq, acceptor_subkey):
    usage = 25 if from_client else 23
    flags = (0 if from_client else 0x01) | (0x04 if acceptor_subkey else 0)
    h = cfx_header(0x0404, flags, 0, 0, seq)
    return h + cksum.checksum(key, usage, data + h)


def emit(name, etype, key, from_client, level, header_sign, hdr, body, trailer, sealed_body, token, note):
    pdu = hdr + sealed_body + trailer + token
    assert len(token) == struct.unpack('<H', hdr[10:12])[0], name
    assert len(pdu) == struct.unpack('<H', hdr[8:10])[0], name
    print(json.dumps({
        'name': name, 'etype': etype, 'key': key.contents.hex(), 'from_client': from_client,
        'level': level, 'header_sign': header_sign, 'stub_off': len(hdr),
        'trailer_off': len(hdr) + len(body), 'pdu': pdu.hex(), 'plain': body.hex(), 'made_with': note,
    }))


def body_of(n, tag):
    stub = bytes((tag * 31 + i * 7) & 0xff for i in range(n))
    pad = (16 - n % 16) % 16
    return stub + b'\x00' * pad, pad


def main():
    rnd = random.Random(4121)
    aes256 = crypto.Key(18, bytes(range(0x10, 0x30)))
    aes128 = crypto.Key(17, bytes(range(0x40, 0x50)))
    rc4 = crypto.Key(23, bytes.fromhex('ebd03ff0acf8be8a1d1bf15943dcd154'))

    # 1. Impacket's own GSS_Wrap: initiator, no header signing (how its
    #    DCE-RPC client seals with -k).
    for cls, key, et in ((GSSAPI_AES256, aes256, 18), (GSSAPI_AES128, aes128, 17)):
        for n, seq in ((45, 0), (160, 1), (3, 0x7fffffff)):
            body, pad = body_of(n, seq & 0xff)
            auth_len = 16 + 28 + 16
            hdr, trailer = pdu_parts(True, body, 16, 6, auth_len, pad)
            sealed, token = cls().GSS_Wrap(key, body, seq, direction='init')
            emit('impacket GSS_Wrap %d n=%d seq=%d' % (et, n, seq), et, key, True, 6, False,
                 hdr, body, trailer, sealed, token, 'impacket GSSAPI_AES.GSS_Wrap')
        # A body only 8-aligned: Impacket fills to the block with EC=8
        # filler bytes, which then travel in the token.
        body = bytes(range(40))
        hdr, trailer = pdu_parts(True, body, 16, 6, 16 + 28 + 8 + 16, 0)
        sealed, token = cls().GSS_Wrap(key, body, 4, direction='init')
        emit('impacket GSS_Wrap %d EC=8' % et, et, key, True, 6, False,
             hdr, body, trailer, sealed, token, 'impacket GSSAPI_AES.GSS_Wrap')

    # 2. RC4: Impacket's GSS_Wrap in both directions (body 8-aligned so it
    #    adds no padding of its own).
    for from_client in (True, False):
        for n, seq in ((16, 0), (96, 5)):
            body, pad = body_of(n, seq + 3)
            random.seed(seq * 2 + from_client)  # Impacket draws its confounder from `random`
            hdr, trailer = pdu_parts(from_client, body, 9, 6, 45, pad)
            sealed, token = GSSAPI_RC4().GSS_Wrap(rc4, body, seq, direction='init' if from_client else 'accept')
            emit('impacket RC4 GSS_Wrap client=%s n=%d' % (from_client, n), 23, rc4, from_client, 6, False,
                 hdr, body, trailer, sealed, token, 'impacket GSSAPI_RC4.GSS_Wrap')
            # Integrity level, RC4 MIC over the stub.
            hdr, trailer = pdu_parts(from_client, body, 9, 5, 37, pad)
            token = GSSAPI_RC4().GSS_GetMIC(rc4, body, seq, direction='init' if from_client else 'accept')
            emit('impacket RC4 GSS_GetMIC client=%s n=%d' % (from_client, n), 23, rc4, from_client, 5, False,
                 hdr, body, trailer, body, token, 'impacket GSSAPI_RC4.GSS_GetMIC')

    # 3. AES both directions, with and without header signing, from the
    #    RFC 3961 primitives.
    for cls, cks, key, et in ((crypto._AES256CTS, crypto._SHA1AES256, aes256, 18),
                              (crypto._AES128CTS, crypto._SHA1AES128, aes128, 17)):
        for from_client in (True, False):
            for header_sign in (True, False):
                for n, seq in ((64, 2), (200, 9)):
                    body, pad = body_of(n, seq + et)
                    conf = bytes(rnd.randrange(256) for _ in range(16))
                    hdr, trailer = pdu_parts(from_client, body, 16, 6, 60, pad)
                    sealed, token = aes_wrap_manual(cls, key, from_client, hdr, body, trailer, header_sign, seq,
                                                    conf, not from_client)
                    emit('aes wrap %d client=%s hs=%s n=%d' % (et, from_client, header_sign, n), et, key,
                         from_client, 6, header_sign, hdr, body, trailer, sealed, token,
                         'impacket RFC 3961 primitives, RFC 4121 layout')
                    hdr, trailer = pdu_parts(from_client, body, 16, 5, 28, pad)
                    data = hdr + body + trailer if header_sign else body
                    token = aes_mic_manual(cks, key, from_client, data, seq, not from_client)
                    emit('aes mic %d client=%s hs=%s n=%d' % (et, from_client, header_sign, n), et, key,
                         from_client, 5, header_sign, hdr, body, trailer, body, token,
                         'impacket checksum profile, RFC 4121 MIC layout')


if __name__ == '__main__':
    main()
