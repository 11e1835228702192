#!/usr/bin/python3
"""tsch_lab: a tiny Task Scheduler remoting lab server for making captures.

It is the server half of pcaps/gen/make-captures.sh and runs inside the
server network namespace only. It uses Debian's impacket for SMB (SMBSERVER)
and for the NDR (un)marshalling of MS-TSCH / EPM structures; the DCE-RPC
connection-oriented engine (bind/alter_context/auth3, NTLMSSP server side with
signing and sealing, fragment reassembly, NDR and NDR64 contexts) is ours,
because impacket's DCERPCServer handles neither authentication nor more than
one client at a time.

Endpoints (all on --addr, never anything else):
  445/tcp and 139/tcp  SMB1/SMB2 (impacket SMBSERVER), IPC$ with \\pipe\\atsvc
                       and ADMIN$ (a directory holding Temp\\)
  135/tcp              EPM ept_map answering for ATSVC, SASec, ITaskSchedulerService
  --tcp-port           the same RPC engine over ncacn_ip_tcp

Every RPC call the server decodes is appended as one JSON line to --events,
so the capture facts can be cross-checked against what the server saw.
"""

import argparse
import datetime
import hmac
import hashlib
import json
import logging
import os
import re
import socket
import socketserver
import struct
import sys
import threading
import configparser

from Cryptodome.Cipher import ARC4

from impacket import ntlm, smb3structs as smb2, smbserver
from impacket.uuid import uuidtup_to_bin, bin_to_uuidtup
from impacket.dcerpc.v5 import tsch, atsvc, sasec, epm, srvs
from impacket.dcerpc.v5.dtypes import NULL

LOG = logging.getLogger("tsch_lab")

# PDU types (C706 12.6.4, MS-RPCE 2.2.2.1).
PT_REQUEST, PT_RESPONSE, PT_FAULT = 0, 2, 3
PT_BIND, PT_BIND_ACK, PT_BIND_NAK = 11, 12, 13
PT_ALTER, PT_ALTER_RESP, PT_AUTH3 = 14, 15, 16
PFC_FIRST, PFC_LAST, PFC_OBJECT = 0x01, 0x02, 0x80

NDR32 = uuidtup_to_bin(("8a885d04-1ceb-11c9-9fe8-08002b104860", "2.0"))
NDR64 = uuidtup_to_bin(("71710533-beba-4937-8319-b5dbef9ccc36", "1.0"))
# Bind time feature negotiation pseudo transfer syntax prefix (MS-RPCE 3.3.1.5.3).
BTFN_PREFIX = bytes.fromhex("2c1cb76c12984045")

UUID_TSCH = tsch.MSRPC_UUID_TSCHS
UUID_ATSVC = atsvc.MSRPC_UUID_ATSVC
UUID_SASEC = sasec.MSRPC_UUID_SASEC
UUID_EPM = epm.MSRPC_UUID_PORTMAP
UUID_SRVS = srvs.MSRPC_UUID_SRVS

AUTH_WINNT = 10
AUTH_SPNEGO, AUTH_KRB5 = 9, 16
PFC_SUPPORT_HEADER_SIGN = 0x04  # in bind/alter_context flags (MS-RPCE 2.2.2.3)
LEVEL_PRIVACY, LEVEL_INTEGRITY = 6, 5

NCA_S_OP_RNG_ERROR = 0x1C010002
NCA_S_PROTO_ERROR = 0x1C01000B
NCA_S_FAULT_ACCESS_DENIED = 0x00000005
NCA_S_FAULT_NDR = 0x000006F7


class RpcFault(Exception):
    def __init__(self, status):
        super().__init__("fault 0x%08x" % status)
        self.status = status


class Lab:
    """Shared lab state: credentials, task store, event log, file roots."""

    def __init__(self, args):
        self.args = args
        self.lock = threading.Lock()
        self.tasks = {}
        self.jobs = {}
        self.next_job = 1
        self.events = open(args.events, "a", buffering=1) if args.events else None
        self.nt_hash = ntlm.compute_nthash(args.password)
        self.seal_faults = getattr(args, "seal_faults", False)
        self.krb = None
        if args.keytab:
            import krb_accept
            self.krb = krb_accept.KrbAcceptor(args.keytab)

    def event(self, **kv):
        kv["ts"] = datetime.datetime.utcnow().isoformat() + "Z"
        LOG.info("event %s", kv)
        if self.events:
            with self.lock:
                self.events.write(json.dumps(kv, sort_keys=True) + "\n")

    def temp_dir(self):
        return os.path.join(self.args.root, "ADMIN", "Temp")


# ---------------------------------------------------------------------------
# NTLMSSP server side (MS-NLMP 3.2.5, 3.4) for connection-oriented RPC.
# ---------------------------------------------------------------------------

class NtlmServer:
    def __init__(self, lab):
        self.lab = lab
        self.challenge = os.urandom(8)
        self.flags = 0
        self.user = self.domain = None
        self.ok = False
        self.session_key = None

    def challenge_token(self, negotiate_raw):
        neg = ntlm.NTLMAuthNegotiate()
        neg.fromString(negotiate_raw)
        want = neg["flags"]
        # Offer what a Windows server offers; the client keeps what it asked for.
        offer = (ntlm.NTLMSSP_NEGOTIATE_UNICODE | ntlm.NTLMSSP_REQUEST_TARGET |
                 ntlm.NTLMSSP_NEGOTIATE_NTLM | ntlm.NTLMSSP_NEGOTIATE_ALWAYS_SIGN |
                 ntlm.NTLMSSP_TARGET_TYPE_DOMAIN | ntlm.NTLMSSP_NEGOTIATE_TARGET_INFO |
                 ntlm.NTLMSSP_NEGOTIATE_VERSION)
        for f in (ntlm.NTLMSSP_NEGOTIATE_SIGN, ntlm.NTLMSSP_NEGOTIATE_SEAL,
                  ntlm.NTLMSSP_NEGOTIATE_KEY_EXCH, ntlm.NTLMSSP_NEGOTIATE_128,
                  ntlm.NTLMSSP_NEGOTIATE_56, ntlm.NTLMSSP_NEGOTIATE_EXTENDED_SESSIONSECURITY):
            if want & f:
                offer |= f
        self.flags = offer
        a = self.lab.args
        av = ntlm.AV_PAIRS()
        av[ntlm.NTLMSSP_AV_DOMAINNAME] = a.domain.encode("utf-16le")
        av[ntlm.NTLMSSP_AV_HOSTNAME] = a.server_name.encode("utf-16le")
        av[ntlm.NTLMSSP_AV_DNS_DOMAINNAME] = (a.domain.lower() + ".lab").encode("utf-16le")
        av[ntlm.NTLMSSP_AV_DNS_HOSTNAME] = (a.server_name.lower() + "." + a.domain.lower() + ".lab").encode("utf-16le")
        av[ntlm.NTLMSSP_AV_TIME] = struct.pack("<q", 116444736000000000 + int(datetime.datetime.utcnow().timestamp()) * 10000000)
        ch = ntlm.NTLMAuthChallenge()
        ch["flags"] = offer
        ch["domain_name"] = a.domain.encode("utf-16le")
        ch["challenge"] = self.challenge
        ch["Version"] = b"\x0a\x00\x7c\x4f\x00\x00\x00\x0f"  # 10.0.20348, NTLM rev 15
        ch["VersionLen"] = 8
        ch["domain_offset"] = 48 + 8  # fixed header, then VERSION
        ch["TargetInfoFields"] = av
        ch["TargetInfoFields_len"] = len(av.getData())
        ch["TargetInfoFields_max_len"] = len(av.getData())
        ch["TargetInfoFields_offset"] = 48 + 8 + len(ch["domain_name"])
        return ch.getData()

    def authenticate(self, auth_raw):
        a = ntlm.NTLMAuthChallengeResponse()
        a.fromString(auth_raw)
        self.user = a["user_name"].decode("utf-16le")
        self.domain = a["domain_name"].decode("utf-16le")
        if a["flags"]:
            self.flags = a["flags"]
        nt = a["ntlm"]
        if self.user.lower() != self.lab.args.user.lower() or len(nt) < 24:
            self.ok = False
            return False
        key = ntlm.NTOWFv2(self.user, "", self.domain, self.lab.nt_hash)
        proof = hmac.new(key, self.challenge + nt[16:], hashlib.md5).digest()
        if proof != nt[:16]:
            self.ok = False
            return False
        base = hmac.new(key, proof, hashlib.md5).digest()
        if self.flags & ntlm.NTLMSSP_NEGOTIATE_KEY_EXCH and a["session_key"]:
            self.session_key = ARC4.new(base).decrypt(a["session_key"])
        else:
            self.session_key = base
        self.ok = True
        f = self.flags
        self.c_sign = ntlm.SIGNKEY(f, self.session_key, "Client")
        self.s_sign = ntlm.SIGNKEY(f, self.session_key, "Server")
        self.c_seal = ARC4.new(ntlm.SEALKEY(f, self.session_key, "Client")).encrypt
        self.s_seal = ARC4.new(ntlm.SEALKEY(f, self.session_key, "Server")).encrypt
        # One sequence number per direction (MS-NLMP 3.4.3), both from 0.
        self.recv_seq = 0
        self.send_seq = 0
        return True


# ---------------------------------------------------------------------------
# Connection-oriented DCE-RPC engine.
# ---------------------------------------------------------------------------

def hdr(ptype, flags, call_id, body_len, auth_len):
    return struct.pack("<BBBBIHHI", 5, 0, ptype, flags, 0x10, 16 + body_len, auth_len, call_id)


class RpcConnection:
    """One RPC association over one byte stream (a pipe or a TCP socket)."""

    def __init__(self, lab, sock, endpoint, secondary_addr):
        self.lab = lab
        self.sock = sock
        self.endpoint = endpoint
        self.secondary_addr = secondary_addr
        self.contexts = {}  # ctx_id -> (abstract syntax 20 bytes, ndr64 bool)
        self.auth = None
        self.krb = None  # krb_accept.KrbContext once a Kerberos AP-REQ was accepted
        self.auth_type = None
        self.auth_level = 1
        self.auth_ctx_id = 0
        self.max_xmit = 4280
        self.pending = {}  # call_id -> list of stub pieces

    # -- framing --
    def read_pdu(self):
        head = self._read(16)
        if head is None:
            return None
        frag_len = struct.unpack_from("<H", head, 8)[0]
        if frag_len < 16:
            raise ValueError("frag_len %d" % frag_len)
        rest = self._read(frag_len - 16)
        if rest is None:
            return None
        return head + rest

    def _read(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                return None
            buf += chunk
        return buf

    def serve(self):
        while True:
            pdu = self.read_pdu()
            if pdu is None:
                return
            ptype, flags = pdu[2], pdu[3]
            call_id = struct.unpack_from("<I", pdu, 12)[0]
            if ptype in (PT_BIND, PT_ALTER):
                self.sock.sendall(self.bind(pdu, ptype))
            elif ptype == PT_AUTH3:
                self.auth3(pdu)
            elif ptype == PT_REQUEST:
                out = self.request(pdu)
                if out:
                    self.sock.sendall(out)
            else:
                LOG.warning("%s: ignoring PDU type %d call %d", self.endpoint, ptype, call_id)

    # -- auth trailer helpers --
    @staticmethod
    def split_auth(pdu):
        auth_len = struct.unpack_from("<H", pdu, 10)[0]
        if not auth_len:
            return pdu, None, None
        frag_len = len(pdu)
        t = frag_len - auth_len - 8
        trailer = pdu[t:t + 8]
        return pdu[:t], trailer, pdu[t + 8:]

    def bind(self, pdu, ptype):
        call_id = struct.unpack_from("<I", pdu, 12)[0]
        body, trailer, token = self.split_auth(pdu)
        max_t, max_r, assoc = struct.unpack_from("<HHI", body, 16)
        if ptype == PT_BIND or max_r:  # an alter_context may say 0: the association's size stays
            self.max_xmit = min(max_r, 5840)
        n = body[24]
        off = 28
        results = b""
        accepted = []
        for _ in range(n):
            ctx_id, n_ts = struct.unpack_from("<HB", body, off)
            abstract = body[off + 4:off + 24]
            off += 24
            tss = [body[off + 20 * i:off + 20 * (i + 1)] for i in range(n_ts)]
            off += 20 * n_ts
            res = (2, 2, b"\x00" * 20)  # provider rejection, proposed transfer syntaxes not supported
            if abstract[:16] and abstract not in self.lab.interfaces:
                res = (2, 1, b"\x00" * 20)  # abstract syntax not supported
            else:
                for ts in tss:
                    if ts == NDR32 or ts == NDR64:
                        res = (0, 0, ts)
                        self.contexts[ctx_id] = (abstract, ts == NDR64)
                        accepted.append((ctx_id, bin_to_uuidtup(abstract), "NDR64" if ts == NDR64 else "NDR"))
                        break
                    if ts[:8] == BTFN_PREFIX:
                        res = (3, ts[8] & 0x03, b"\x00" * 20)  # negotiate_ack, echo the features we know
                        break
            results += struct.pack("<HH", res[0], res[1]) + res[2]
        auth_out = b""
        if trailer is not None:
            atype, alevel, _pad, _r, actx = struct.unpack("<BBBBI", trailer)
            self.auth_level, self.auth_ctx_id = alevel, actx
            if atype == AUTH_WINNT and token[:8] == b"NTLMSSP\x00" and token[8] == 1:
                self.auth = NtlmServer(self.lab)
                chal = self.auth.challenge_token(token)
                auth_out = (struct.pack("<BBBBI", AUTH_WINNT, alevel, 0, 0, actx), chal)
            elif atype in (AUTH_SPNEGO, AUTH_KRB5) and self.lab.krb is not None:
                out_tok = self.kerberos_token(atype, token, pdu[3])
                if out_tok is not None:
                    auth_out = (struct.pack("<BBBBI", atype, alevel, 0, 0, actx), out_tok)
        sec = self.secondary_addr.encode() + b"\x00" if ptype == PT_BIND else b"\x00"
        out = struct.pack("<HHI", self.max_xmit, self.max_xmit, assoc or 0x1ed5) + struct.pack("<H", len(sec)) + sec
        out += b"\x00" * ((4 - (16 + len(out)) % 4) % 4)
        out += struct.pack("<B3x", n) + results
        auth_len = 0
        if auth_out:
            out += b"\x00" * ((4 - (16 + len(out)) % 4) % 4)
            out += auth_out[0] + auth_out[1]
            auth_len = len(auth_out[1])
        rtype = PT_BIND_ACK if ptype == PT_BIND else PT_ALTER_RESP
        ev = dict(kind="bind", endpoint=self.endpoint, call_id=call_id,
                  contexts=[list(a) for a in accepted], auth_level=self.auth_level if trailer is not None else None)
        if trailer is not None and trailer[0] != AUTH_WINNT:  # Kerberos only: NTLM events stay as they were
            ev["auth_type"] = trailer[0]
            ev["pdu"] = "bind" if ptype == PT_BIND else "alter_context"
        self.lab.event(**ev)
        flags = PFC_FIRST | PFC_LAST
        if self.krb is not None and self.krb.header_sign:
            flags |= PFC_SUPPORT_HEADER_SIGN
        return hdr(rtype, flags, call_id, len(out), auth_len) + out

    def kerberos_token(self, atype, token, pfc_flags):
        """First leg (AP-REQ) or DCE-style third leg (AP-REP echo) of Kerberos;
        returns the token to answer with, or None when nothing is sent back."""
        import krb_accept
        if self.krb is None or self.krb.completed:
            self.krb, reply = self.lab.krb.accept(token)
            self.auth_type = atype
            # Header signing as Windows: when the client asks for it in the bind.
            self.krb.header_sign = bool(pfc_flags & PFC_SUPPORT_HEADER_SIGN)
            ev = krb_accept.describe(self.krb)
            self.lab.event(kind="kerberos_ap_req", endpoint=self.endpoint, auth_type=atype, **ev)
            if self.krb.completed:
                self.krb.server_seq = self.krb.ap_rep_seq
            return reply
        reply = self.lab.krb.third_leg(self.krb, token)
        self.lab.event(kind="kerberos_third_leg", endpoint=self.endpoint, auth_type=atype, ok=True)
        return reply if reply else None

    def auth3(self, pdu):
        _body, _trailer, token = self.split_auth(pdu)
        if self.krb is not None and token is not None:
            self.kerberos_token(self.auth_type, token, 0)
            return
        if self.auth is None or token is None:
            return
        ok = self.auth.authenticate(token)
        self.lab.event(kind="auth3", endpoint=self.endpoint, user=self.auth.user, domain=self.auth.domain,
                       ntlm_ok=ok, flags="0x%08x" % self.auth.flags,
                       exported_session_key=self.auth.session_key.hex() if ok else None)

    def request(self, pdu):
        flags = pdu[3]
        call_id = struct.unpack_from("<I", pdu, 12)[0]
        ctx_id, opnum = struct.unpack_from("<HH", pdu, 20)
        stub_off = 24 + (16 if flags & PFC_OBJECT else 0)
        body, trailer, verifier = self.split_auth(pdu)
        stub = body[stub_off:]
        if trailer is not None and self.krb is not None:
            import krb_accept
            _t, alevel, pad, _r, _c = struct.unpack("<BBBBI", trailer)
            if alevel == LEVEL_PRIVACY:
                if not self.krb.completed:
                    return self.fault(call_id, ctx_id, NCA_S_FAULT_ACCESS_DENIED)
                sign = self.krb.header_sign
                try:
                    stub = krb_accept.unwrap(self.krb, stub, verifier, pdu[:stub_off] if sign else b"",
                                             trailer if sign else b"")
                except krb_accept.KrbError as e:
                    LOG.error("call %d: %s", call_id, e)
                    return self.fault(call_id, ctx_id, NCA_S_FAULT_ACCESS_DENIED)
            if pad:
                stub = stub[:-pad]
        elif trailer is not None:
            _t, alevel, pad, _r, _c = struct.unpack("<BBBBI", trailer)
            if alevel in (LEVEL_PRIVACY, LEVEL_INTEGRITY):
                if self.auth is None or not self.auth.ok:
                    return self.fault(call_id, ctx_id, NCA_S_FAULT_ACCESS_DENIED)
                if alevel == LEVEL_PRIVACY:
                    stub = self.auth.c_seal(stub)
                plain_pdu = pdu[:stub_off] + stub + trailer
                want = hmac.new(self.auth.c_sign, struct.pack("<I", self.auth.recv_seq) + plain_pdu, hashlib.md5).digest()[:8]
                got = self.auth.c_seal(verifier[4:12]) if self.auth.flags & ntlm.NTLMSSP_NEGOTIATE_KEY_EXCH else verifier[4:12]
                seq = struct.unpack_from("<I", verifier, 12)[0]
                if got != want or seq != self.auth.recv_seq:
                    LOG.error("bad verifier on call %d (seq %d/%d)", call_id, seq, self.auth.recv_seq)
                    return self.fault(call_id, ctx_id, NCA_S_FAULT_ACCESS_DENIED)
                self.auth.recv_seq += 1
            if pad:
                stub = stub[:-pad]
        pieces = self.pending.setdefault(call_id, [])
        pieces.append(stub)
        if not flags & PFC_LAST:
            return None
        stub = b"".join(self.pending.pop(call_id))
        if ctx_id not in self.contexts:
            return self.fault(call_id, ctx_id, NCA_S_PROTO_ERROR)
        abstract, ndr64 = self.contexts[ctx_id]
        iface = self.lab.interfaces[abstract]
        try:
            out = iface(self, opnum, stub, ndr64, call_id)
        except RpcFault as e:
            return self.fault(call_id, ctx_id, e.status, sealed=self.lab.seal_faults)
        except Exception:
            LOG.exception("%s: cannot decode opnum %d", self.endpoint, opnum)
            return self.fault(call_id, ctx_id, NCA_S_FAULT_NDR)
        return self.response(call_id, ctx_id, out)

    def fault(self, call_id, ctx_id, status, sealed=False):
        body = struct.pack("<IHBBI4x", 0, ctx_id, 0, 0, status)
        if sealed and self.auth_level == LEVEL_PRIVACY:
            # A fault the interface raised on an established sealed context
            # (--seal-faults): it carries an auth verifier like a response,
            # so it takes its turn in the per-message security (NTLM's RC4
            # stream, the Kerberos acceptor sequence). Its stub is empty.
            if self.krb is not None and self.krb.completed:
                import krb_accept
                vlen = krb_accept.verifier_len(self.krb)
                trailer = struct.pack("<BBBBI", self.auth_type, self.auth_level, 0, 0, self.auth_ctx_id)
                h = hdr(PT_FAULT, PFC_FIRST | PFC_LAST, call_id, len(body) + 8 + vlen, vlen)
                sign = self.krb.header_sign
                _stub, verifier = krb_accept.wrap(self.krb, b"", h + body if sign else b"", trailer if sign else b"")
                return h + body + trailer + verifier
            if self.auth is not None and self.auth.ok:
                trailer = struct.pack("<BBBBI", AUTH_WINNT, self.auth_level, 0, 0, self.auth_ctx_id)
                h = hdr(PT_FAULT, PFC_FIRST | PFC_LAST, call_id, len(body) + 8 + 16, 16)
                self.auth.s_seal(b"")
                mac = hmac.new(self.auth.s_sign, struct.pack("<I", self.auth.send_seq) + h + body + trailer,
                               hashlib.md5).digest()[:8]
                if self.auth.flags & ntlm.NTLMSSP_NEGOTIATE_KEY_EXCH:
                    mac = self.auth.s_seal(mac)
                verifier = struct.pack("<I", 1) + mac + struct.pack("<I", self.auth.send_seq)
                self.auth.send_seq += 1
                return h + body + trailer + verifier
        return hdr(PT_FAULT, PFC_FIRST | PFC_LAST, call_id, len(body), 0) + body

    def response(self, call_id, ctx_id, stub):
        if self.krb is not None and self.krb.completed and self.auth_level == LEVEL_PRIVACY:
            return self.krb_response(call_id, ctx_id, stub)
        sealed = self.auth is not None and self.auth.ok and self.auth_level in (LEVEL_PRIVACY, LEVEL_INTEGRITY)
        # Leave room for header (24), trailer (8), verifier (16) and padding.
        room = self.max_xmit - 24 - (8 + 16 + 16 if sealed else 0)
        room -= room % 8
        chunks = [stub[i:i + room] for i in range(0, len(stub), room)] or [b""]
        out = b""
        for i, chunk in enumerate(chunks):
            f = (PFC_FIRST if i == 0 else 0) | (PFC_LAST if i == len(chunks) - 1 else 0)
            head_rest = struct.pack("<IHBB", len(stub) - i * room, ctx_id, 0, 0)
            if not sealed:
                out += hdr(PT_RESPONSE, f, call_id, 8 + len(chunk), 0) + head_rest + chunk
                continue
            # Windows pads sealed stubs to 16 bytes (sec_trailer then stays 4-aligned as
            # MS-RPCE 2.2.2.11 asks); Wireshark cannot unseal a shorter stub.
            pad = (16 - len(chunk) % 16) % 16
            chunk += b"\x00" * pad
            trailer = struct.pack("<BBBBI", AUTH_WINNT, self.auth_level, pad, 0, self.auth_ctx_id)
            h = hdr(PT_RESPONSE, f, call_id, 8 + len(chunk) + 8 + 16, 16)
            to_sign = h + head_rest + chunk + trailer
            if self.auth_level == LEVEL_PRIVACY:
                body = self.auth.s_seal(chunk)
            else:
                body = chunk
            mac = hmac.new(self.auth.s_sign, struct.pack("<I", self.auth.send_seq) + to_sign, hashlib.md5).digest()[:8]
            if self.auth.flags & ntlm.NTLMSSP_NEGOTIATE_KEY_EXCH:
                mac = self.auth.s_seal(mac)
            verifier = struct.pack("<I", 1) + mac + struct.pack("<I", self.auth.send_seq)
            self.auth.send_seq += 1
            out += h + head_rest + body + trailer + verifier
        return out


    def krb_response(self, call_id, ctx_id, stub):
        """Response fragments sealed with the Kerberos acceptor subkey."""
        import krb_accept
        vlen = krb_accept.verifier_len(self.krb)
        room = self.max_xmit - 24 - (8 + vlen + 16)
        room -= room % 16
        chunks = [stub[i:i + room] for i in range(0, len(stub), room)] or [b""]
        out = b""
        for i, chunk in enumerate(chunks):
            f = (PFC_FIRST if i == 0 else 0) | (PFC_LAST if i == len(chunks) - 1 else 0)
            head_rest = struct.pack("<IHBB", len(stub) - i * room, ctx_id, 0, 0)
            pad = (16 - len(chunk) % 16) % 16  # Windows pads sealed stubs to 16
            chunk += b"\x00" * pad
            trailer = struct.pack("<BBBBI", self.auth_type, self.auth_level, pad, 0, self.auth_ctx_id)
            h = hdr(PT_RESPONSE, f, call_id, 8 + len(chunk) + 8 + vlen, vlen)
            sign = self.krb.header_sign
            body, verifier = krb_accept.wrap(self.krb, chunk, h + head_rest if sign else b"", trailer if sign else b"")
            out += h + head_rest + body + trailer + verifier
        return out


# ---------------------------------------------------------------------------
# Interfaces.
# ---------------------------------------------------------------------------

def z(s):
    """Strips the terminating NUL impacket keeps on wide strings."""
    if not isinstance(s, str):
        return None  # a NULL unique pointer unmarshals as bytes/None
    return s[:-1] if s.endswith("\x00") else s


def nul(s):
    return s if s.endswith("\x00") else s + "\x00"


TEMP_RE = re.compile(r"%windir%\\temp\\([A-Za-z0-9_.-]+)", re.I)


def xml_field(xml, tag):
    m = re.search(r"<%s>(.*?)</%s>" % (tag, tag), xml or "", re.S)
    if not m:
        return None
    return m.group(1).replace("&gt;", ">").replace("&lt;", "<").replace("&quot;", '"').replace("&apos;", "'").replace("&amp;", "&")


# A task the lab already holds when it starts, as a real server holds its own:
# the hijack capture reads it back (SchRpcRetrieveTask), replaces it and puts it back.
SEEDED_TASKS = {
    "\\TschLab\\NightlyBackup": """<?xml version="1.0" encoding="UTF-16"?>
<Task version="1.2" xmlns="http://schemas.microsoft.com/windows/2004/02/mit/task">
  <RegistrationInfo>
    <Author>LAB\\backup-admin</Author>
    <Description>Nightly backup of the lab share.</Description>
    <URI>\\TschLab\\NightlyBackup</URI>
  </RegistrationInfo>
  <Triggers>
    <CalendarTrigger>
      <StartBoundary>2026-01-01T02:00:00</StartBoundary>
      <ScheduleByDay><DaysInterval>1</DaysInterval></ScheduleByDay>
    </CalendarTrigger>
  </Triggers>
  <Principals>
    <Principal id="Author">
      <UserId>S-1-5-18</UserId>
    </Principal>
  </Principals>
  <Settings>
    <Enabled>true</Enabled>
  </Settings>
  <Actions Context="Author">
    <Exec>
      <Command>C:\\Program Files\\LabBackup\\backup.exe</Command>
      <Arguments>--nightly</Arguments>
    </Exec>
  </Actions>
</Task>
""",
}

FAKE_OUTPUT = ("USER INFORMATION\r\n----------------\r\n\r\nUser Name           SID\r\n"
               "=================== ========\r\nnt authority\\system S-1-5-18\r\n\r\n[tsch_lab fake output]\r\n")


def tsch_iface(conn, opnum, stub, ndr64, call_id):
    lab = conn.lab
    base = dict(endpoint=conn.endpoint, interface="ITaskSchedulerService", call_id=call_id, opnum=opnum,
                ndr64=ndr64, auth_level=conn.auth_level)
    if opnum == 0:
        resp = tsch.SchRpcHighestVersionResponse(isNDR64=ndr64)
        resp["pVersion"] = 0x00010006
        resp["ErrorCode"] = 0
        lab.event(op="SchRpcHighestVersion", **base)
        return resp.getData()
    if opnum == 1:
        req = tsch.SchRpcRegisterTask(stub, isNDR64=ndr64)
        path = z(req["path"]) or "\\"
        xml = z(req["xml"])
        creds = []
        if req["cCreds"]:
            for c in req["pCreds"]:
                creds.append({"userId": z(c["userId"]), "password": z(c["password"]), "flags": c["flags"]})
        with lab.lock:
            lab.tasks[path.lower()] = xml
        lab.event(op="SchRpcRegisterTask", path=path, flags=req["flags"], logon_type=req["logonType"],
                  sddl=z(req["sddl"]), creds=creds, command=xml_field(xml, "Command"),
                  arguments=xml_field(xml, "Arguments"), user_id=xml_field(xml, "UserId"),
                  xml_sha256_utf16le=hashlib.sha256(nul(xml).encode("utf-16le")).hexdigest(), **base)
        resp = tsch.SchRpcRegisterTaskResponse(isNDR64=ndr64)
        resp["pActualPath"] = nul(path)
        resp["pErrorInfo"] = NULL
        resp["ErrorCode"] = 0
        return resp.getData()
    if opnum == 2:
        req = tsch.SchRpcRetrieveTask(stub, isNDR64=ndr64)
        path = z(req["path"]) or ""
        with lab.lock:
            xml = lab.tasks.get(path.lower())
        lab.event(op="SchRpcRetrieveTask", path=path, found=xml is not None,
                  xml_sha256_utf16le=hashlib.sha256(nul(xml).encode("utf-16le")).hexdigest() if xml else None, **base)
        resp = tsch.SchRpcRetrieveTaskResponse(isNDR64=ndr64)
        if xml is None:
            resp["pXml"] = NULL
            resp["ErrorCode"] = 0x80070002  # HRESULT_FROM_WIN32(ERROR_FILE_NOT_FOUND)
        else:
            resp["pXml"] = nul(xml)
            resp["ErrorCode"] = 0
        return resp.getData()
    if opnum == 12:
        req = tsch.SchRpcRun(stub, isNDR64=ndr64)
        path = z(req["path"])
        with lab.lock:
            xml = lab.tasks.get((path or "").lower())
        args = xml_field(xml, "Arguments") or ""
        m = TEMP_RE.search(args)
        if m:
            os.makedirs(lab.temp_dir(), exist_ok=True)
            with open(os.path.join(lab.temp_dir(), m.group(1)), "w") as fh:
                fh.write(FAKE_OUTPUT)
        lab.event(op="SchRpcRun", path=path, flags=req["flags"], session_id=req["sessionId"], **base)
        resp = tsch.SchRpcRunResponse(isNDR64=ndr64)
        resp["pGuid"] = bytes.fromhex("5c8b6f1e2a3d4b7c9e0f112233445566")
        resp["ErrorCode"] = 0
        return resp.getData()
    if opnum == 13:
        req = tsch.SchRpcDelete(stub, isNDR64=ndr64)
        path = z(req["path"])
        with lab.lock:
            lab.tasks.pop((path or "").lower(), None)
        lab.event(op="SchRpcDelete", path=path, **base)
        resp = tsch.SchRpcDeleteResponse(isNDR64=ndr64)
        resp["ErrorCode"] = 0
        return resp.getData()
    if opnum == 16:
        req = tsch.SchRpcGetLastRunInfo(stub, isNDR64=ndr64)
        path = z(req["path"])
        lab.event(op="SchRpcGetLastRunInfo", path=path, **base)
        now = datetime.datetime.utcnow()
        resp = tsch.SchRpcGetLastRunInfoResponse(isNDR64=ndr64)
        st = resp["pLastRuntime"]
        st["wYear"], st["wMonth"], st["wDayOfWeek"], st["wDay"] = now.year, now.month, (now.isoweekday() % 7), now.day
        st["wHour"], st["wMinute"], st["wSecond"], st["wMilliseconds"] = now.hour, now.minute, now.second, 0
        resp["pLastReturnCode"] = 0
        resp["ErrorCode"] = 0
        return resp.getData()
    lab.event(op="unsupported", **base)
    raise RpcFault(NCA_S_OP_RNG_ERROR)


def atsvc_iface(conn, opnum, stub, ndr64, call_id):
    lab = conn.lab
    base = dict(endpoint=conn.endpoint, interface="ATSVC", call_id=call_id, opnum=opnum, ndr64=ndr64,
                auth_level=conn.auth_level)
    if opnum == 0:
        req = atsvc.NetrJobAdd(stub, isNDR64=ndr64)
        info = req["pAtInfo"]
        with lab.lock:
            job = lab.next_job
            lab.next_job += 1
            lab.jobs[job] = z(info["Command"])
        lab.event(op="NetrJobAdd", server_name=z(req["ServerName"]), job_id=job, command=z(info["Command"]),
                  job_time=info["JobTime"], days_of_month=info["DaysOfMonth"], days_of_week=info["DaysOfWeek"],
                  flags=info["Flags"], **base)
        resp = atsvc.NetrJobAddResponse(isNDR64=ndr64)
        resp["pJobId"] = job
        resp["ErrorCode"] = 0
        return resp.getData()
    if opnum == 1:
        req = atsvc.NetrJobDel(stub, isNDR64=ndr64)
        lab.event(op="NetrJobDel", min_job_id=req["MinJobId"], max_job_id=req["MaxJobId"], **base)
        resp = atsvc.NetrJobDelResponse(isNDR64=ndr64)
        resp["ErrorCode"] = 0
        return resp.getData()
    lab.event(op="unsupported", **base)
    raise RpcFault(NCA_S_OP_RNG_ERROR)


def sasec_iface(conn, opnum, stub, ndr64, call_id):
    lab = conn.lab
    base = dict(endpoint=conn.endpoint, interface="SASec", call_id=call_id, opnum=opnum, ndr64=ndr64,
                auth_level=conn.auth_level)
    if opnum == 0:
        req = sasec.SASetAccountInformation(stub, isNDR64=ndr64)
        lab.event(op="SASetAccountInformation", handle=z(req["Handle"]), job_name=z(req["pwszJobName"]),
                  account=z(req["pwszAccount"]), password=z(req["pwszPassword"]), job_flags=req["dwJobFlags"], **base)
        resp = sasec.SASetAccountInformationResponse(isNDR64=ndr64)
        resp["ErrorCode"] = 0
        return resp.getData()
    lab.event(op="unsupported", **base)
    raise RpcFault(NCA_S_OP_RNG_ERROR)


def epm_iface(conn, opnum, stub, ndr64, call_id):
    lab = conn.lab
    if opnum != 3:
        raise RpcFault(NCA_S_OP_RNG_ERROR)
    req = epm.ept_map(stub, isNDR64=ndr64)
    tower = epm.EPMTower(b"".join(req["map_tower"]["tower_octet_string"]))
    floors = tower["Floors"]
    iface = floors[0]["InterfaceUUID"] + struct.pack("<HH", floors[0]["MajorVersion"], floors[0]["MinorVersion"])
    resp = epm.ept_mapResponse(isNDR64=ndr64)
    resp["entry_handle"] = epm.ept_lookup_handle_t()
    lab.event(op="ept_map", endpoint=conn.endpoint, interface="EPM", call_id=call_id, opnum=3,
              requested="%s v%s" % bin_to_uuidtup(iface),
              tcp_port=lab.args.tcp_port)
    if iface in (UUID_TSCH, UUID_ATSVC, UUID_SASEC):
        out = b""
        for f in floors[:3]:
            out += f.getData()
        port = epm.EPMPortAddr()
        port["IpPort"] = lab.args.tcp_port
        host = epm.EPMHostAddr()
        host["Ip4addr"] = socket.inet_aton(lab.args.addr)
        octets = struct.pack("<H", 5) + out + port.getData() + host.getData()
        t = epm.twr_p_t(isNDR64=ndr64)
        t["tower_length"] = len(octets)
        t["tower_octet_string"] = octets
        resp["num_towers"] = 1
        resp["ITowers"].append(t)
        resp["status"] = 0
    else:
        resp["num_towers"] = 0
        resp["status"] = 0x16c9a0d6  # EPT_S_NOT_REGISTERED
    return resp.getData()


def srvs_iface(conn, opnum, stub, ndr64, call_id):
    """srvsvc NetrServerGetInfo only: a non-Task-Scheduler interface a client
    can call on the same sealed association (tsch_client.py tcp-interleaved)."""
    lab = conn.lab
    base = dict(endpoint=conn.endpoint, interface="srvsvc", call_id=call_id, opnum=opnum, ndr64=ndr64,
                auth_level=conn.auth_level)
    if opnum != 21:
        lab.event(op="unsupported", **base)
        raise RpcFault(NCA_S_OP_RNG_ERROR)
    req = srvs.NetrServerGetInfo(stub, isNDR64=ndr64)
    level = req["Level"]
    lab.event(op="NetrServerGetInfo", level=level, **base)
    if level != 101:
        raise RpcFault(NCA_S_OP_RNG_ERROR)
    resp = srvs.NetrServerGetInfoResponse(isNDR64=ndr64)
    resp["InfoStruct"]["tag"] = 101
    info = resp["InfoStruct"]["ServerInfo101"]
    info["sv101_platform_id"] = 500
    info["sv101_name"] = "TSCH-LAB\x00"
    info["sv101_version_major"] = 10
    info["sv101_version_minor"] = 0
    info["sv101_type"] = 0x00009003  # workstation, server, NT
    info["sv101_comment"] = "\x00"
    resp["ErrorCode"] = 0
    return resp.getData()


# ---------------------------------------------------------------------------
# Listeners.
# ---------------------------------------------------------------------------

def rpc_listener(lab, host, port, endpoint, secondary):
    class Handler(socketserver.BaseRequestHandler):
        def handle(self):
            try:
                RpcConnection(lab, self.request, endpoint, secondary).serve()
            except (ConnectionError, OSError) as e:
                LOG.info("%s: connection ended: %s", endpoint, e)
            except Exception:
                LOG.exception("%s: connection failed", endpoint)

    class Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
        allow_reuse_address = True
        daemon_threads = True

    srv = Server((host, port), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def grant_ntlm_sign(orig):
    """Wraps impacket's SMB2 SESSION_SETUP so its NTLM CHALLENGE grants
    NTLMSSP_NEGOTIATE_SIGN (and ALWAYS_SIGN) when the NEGOTIATE asked for it.

    A Windows server does; impacket's never does, and go-msrpc's NTLM client
    always asks for integrity and aborts the logon without it. impacket's own
    client does not ask, so its sessions are unchanged. impacket checks no MIC,
    so editing the flags of the message it built is safe.
    """
    want = ntlm.NTLMSSP_NEGOTIATE_SIGN | ntlm.NTLMSSP_NEGOTIATE_ALWAYS_SIGN

    def hook(conn_id, server, packet):
        cmds, pkts, status = orig(conn_id, server, packet)
        try:
            blob = smb2.SMB2SessionSetup(packet["Data"])["Buffer"]
            i = blob.find(b"NTLMSSP\x00\x01\x00\x00\x00")
            if i < 0 or not struct.unpack_from("<I", blob, i + 12)[0] & ntlm.NTLMSSP_NEGOTIATE_SIGN:
                return cmds, pkts, status
            out = bytearray(cmds[0]["Buffer"])
            j = out.find(b"NTLMSSP\x00\x02\x00\x00\x00")
            if j >= 0:
                flags = struct.unpack_from("<I", out, j + 20)[0] | want
                struct.pack_into("<I", out, j + 20, flags)
                cmds[0]["Buffer"] = bytes(out)
        except Exception:
            LOG.exception("session setup: cannot adjust NTLM challenge flags")
        return cmds, pkts, status
    return hook


def kerberos_session_setup(lab, orig):
    """Wraps the SMB2 SESSION_SETUP handler: a SPNEGO NegTokenInit whose first
    mechanism is Kerberos is accepted with the lab keytab in one round trip
    (AP-REP in an accept-completed NegTokenResp), as a Windows server does;
    anything else (NTLM) goes to impacket's handler unchanged. impacket 0.10's
    SMB server has no Kerberos of its own. The session is not signed: the
    server does not require it and impacket's client does not ask."""
    import krb_accept
    from impacket.spnego import SPNEGO_NegTokenInit, SPNEGO_NegTokenResp

    pending = {}  # conn_id -> DCE-style context waiting for the client's AP-REP echo

    def hook(conn_id, server, packet):
        blob = smb2.SMB2SessionSetup(packet["Data"])["Buffer"]
        try:
            mech = SPNEGO_NegTokenInit(blob)["MechTypes"][0] if blob[:1] == b"\x60" else None
        except Exception:
            mech = None
        if mech not in (krb_accept.MS_KRB5_OID, krb_accept.KRB5_OID) and not (
                conn_id in pending and blob[:1] == b"\xa1"):
            return orig(conn_id, server, packet)
        conn = server.getConnectionData(conn_id, checkStatus=False)
        resp = smb2.SMB2SessionSetup_Response()
        try:
            if conn_id in pending:
                # go-msrpc keeps Kerberos DCE style on SMB: a second round trip.
                token = lab.krb.third_leg(pending.pop(conn_id), blob)
                lab.event(kind="kerberos_third_leg", endpoint="smb2_session_setup", ok=True)
                status = 0
                conn["Authenticated"] = True
            else:
                ctx, token = lab.krb.accept(blob)
                lab.event(kind="kerberos_ap_req", endpoint="smb2_session_setup", **krb_accept.describe(ctx))
                conn["Uid"] = struct.unpack("<I", os.urandom(4))[0] | 1
                if ctx.completed:
                    status = 0
                    conn["Authenticated"] = True
                else:
                    pending[conn_id] = ctx
                    status = 0xC0000016  # STATUS_MORE_PROCESSING_REQUIRED
        except krb_accept.KrbError as e:
            LOG.error("SMB2 Kerberos session setup: %s", e)
            r = SPNEGO_NegTokenResp()
            r["NegState"] = b"\x02"
            token, status = r.getData(), 0xC000006D  # STATUS_LOGON_FAILURE
        resp["SecurityBufferOffset"] = 0x48
        resp["SecurityBufferLength"] = len(token)
        resp["Buffer"] = token
        server.setConnectionData(conn_id, conn)
        return [resp], None, status
    return hook


def smb_listener(lab, pipe_port, port):
    a = lab.args
    cfg = configparser.ConfigParser()
    cfg.add_section("global")
    cfg.set("global", "server_name", a.server_name)
    cfg.set("global", "server_os", "Windows Server 2022 Standard 20348")
    cfg.set("global", "server_domain", a.domain)
    cfg.set("global", "log_file", "None")
    cfg.set("global", "rpc_apis", "yes")
    cfg.set("global", "credentials_file", "")
    cfg.set("global", "SMB2Support", "True")
    cfg.set("global", "anonymous_logon", "False")
    cfg.add_section("IPC$")
    cfg.set("IPC$", "comment", "Remote IPC")
    cfg.set("IPC$", "read only", "yes")
    cfg.set("IPC$", "share type", "3")
    cfg.set("IPC$", "path", "")
    cfg.add_section("ADMIN$")
    cfg.set("ADMIN$", "comment", "Remote Admin")
    cfg.set("ADMIN$", "read only", "no")
    cfg.set("ADMIN$", "share type", "0")
    cfg.set("ADMIN$", "path", os.path.join(a.root, "ADMIN"))
    srv = smbserver.SMBSERVER((a.addr, port), config_parser=cfg)
    orig = srv.hookSmb2Command(smb2.SMB2_SESSION_SETUP, None)
    if lab.krb is not None:
        srv.hookSmb2Command(smb2.SMB2_SESSION_SETUP, kerberos_session_setup(lab, grant_ntlm_sign(orig)))
    else:
        srv.hookSmb2Command(smb2.SMB2_SESSION_SETUP, grant_ntlm_sign(orig))
    srv.processConfigFile()
    srv.addCredential(a.user, 1000, ntlm.compute_lmhash(a.password).hex(), lab.nt_hash.hex())
    srv.registerNamedPipe("atsvc", ("127.0.0.1", pipe_port))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--addr", required=True)
    p.add_argument("--root", required=True, help="directory holding ADMIN/Temp")
    p.add_argument("--tcp-port", type=int, default=49667)
    p.add_argument("--server-name", default="TSCH-LAB-SRV")
    p.add_argument("--domain", default="LAB")
    p.add_argument("--user", default="alice")
    p.add_argument("--password", required=True)
    p.add_argument("--events", help="append decoded calls as JSON lines here")
    p.add_argument("--ready", help="touch this file once every listener is up")
    p.add_argument("--keytab", help="service keys (MIT keytab): accept Kerberos in binds and SMB2 session setup")
    p.add_argument("--seal-faults", action="store_true",
                   help="faults the interfaces raise (nca_s_op_rng_error...) on a sealed context carry an auth verifier")
    a = p.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    os.makedirs(os.path.join(a.root, "ADMIN", "Temp"), exist_ok=True)
    os.makedirs(os.path.join(a.root, "ADMIN", "Tasks"), exist_ok=True)  # legacy .job files land here
    os.chdir(a.root)  # the IPC$ share path is "", so pipe names resolve relative to here
    lab = Lab(a)
    lab.tasks.update({k.lower(): v for k, v in SEEDED_TASKS.items()})
    lab.interfaces = {UUID_TSCH: tsch_iface, UUID_ATSVC: atsvc_iface, UUID_SASEC: sasec_iface, UUID_EPM: epm_iface,
                      UUID_SRVS: srvs_iface}

    pipe = rpc_listener(lab, "127.0.0.1", 0, "ncacn_np:\\pipe\\atsvc", "\\PIPE\\atsvc")
    pipe_port = pipe.server_address[1]
    rpc_listener(lab, a.addr, 135, "ncacn_ip_tcp:135", "135")
    rpc_listener(lab, a.addr, a.tcp_port, "ncacn_ip_tcp:%d" % a.tcp_port, str(a.tcp_port))
    smb_listener(lab, pipe_port, 445)
    smb_listener(lab, pipe_port, 139)
    if a.ready:
        open(a.ready, "w").close()
    LOG.info("lab up on %s (pipe backend 127.0.0.1:%d)", a.addr, pipe_port)
    threading.Event().wait()


if __name__ == "__main__":
    main()
