#!/usr/bin/env python3
"""smb3_facts.py: the facts of one SMB3-encrypted capture, as JSON on stdout.

Called by make-smb3-captures.sh after each capture. What the client did is
given on the command line; this script checks it against an independent
view, tshark with the account's password, and fails (exit 1) unless:
  - the negotiated dialect and cipher are those asked for,
  - every SMB2 message after the session setup travels in a transform header
    and tshark decrypts every one of them,
  - the decrypted messages hold the tree connect to the share and the
    create/write/read/delete-on-close of the file,
  - neither the file name nor the share name appear in clear in the pcap.
"""
import argparse
import hashlib
import json
import os
import subprocess
import sys

CIPHERS = {"none": 0, "AES-128-CCM": 1, "AES-128-GCM": 2, "AES-256-CCM": 3, "AES-256-GCM": 4}
DIALECTS = {"SMB3_00": 0x0300, "SMB3_02": 0x0302, "SMB3_11": 0x0311}
CMDS = {0: "negotiate", 1: "session_setup", 2: "logoff", 3: "tree_connect", 4: "tree_disconnect", 5: "create",
        6: "close", 7: "flush", 8: "read", 9: "write", 10: "lock", 11: "ioctl", 12: "cancel", 13: "echo",
        14: "find", 15: "notify", 16: "getinfo", 17: "setinfo", 18: "oplock_break"}
FIELDS = ["frame.number", "ip.src", "smb2.header.transform.signature", "smb2.cmd", "smb2.flags.response",
          "smb2.sesid", "smb2.nt_status", "smb2.tree", "smb2.filename", "smb2.dialect",
          "smb2.negotiate_context.cipher_id", "smb2.write_length", "smb2.olb.length",
          "smb.create_options"]


def krb_session_key(pcap, keytab, cipher):
    """Kerberos: the SMB session key a keytab yields (ticket -> session key ->
    AP-REP acceptor subkey, by pcaps/gen/krb_accept.py), and the tshark option
    giving it to the SMB2 dissector: tshark 4.0 opens the ticket and the AP-REP
    with the keytab but does not feed the learnt key to SMB3 decryption."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import krb_accept
    out = subprocess.run(["tshark", "-r", pcap, "-Y", "smb2.cmd == 1", "-T", "fields", "-E", "separator=\t",
                          "-e", "smb2.sesid", "-e", "smb2.security_blob"], check=True, capture_output=True,
                         text=True).stdout
    req = resp = sesid = None
    for line in out.splitlines():
        sid, blob = (line.split("\t") + [""])[:2]
        if blob.startswith("60") and req is None:
            req = bytes.fromhex(blob)
        elif blob.startswith("a1") and int(sid, 16):
            resp, sesid = bytes.fromhex(blob), int(sid, 16)
    cname, crealm, key = krb_accept.session_key_from_exchange(keytab, req, resp)
    facts = {"cname": cname, "crealm": crealm, "session_id": "0x%016x" % sesid}
    sid = sesid.to_bytes(8, "little").hex()
    # MS-SMB2 3.3.5.5.3: the first 16 bytes; AES-256 ciphers derive from the full key.
    if cipher not in ("AES-256-CCM", "AES-256-GCM"):
        facts["smb_session_key"] = key[:16].hex()
        return facts, 'uat:smb2_seskey_list:%s,%s,"",""' % (sid, key[:16].hex())
    # tshark 4.0 takes at most 16 bytes of session key: hand it the two
    # 256-bit cipher keys (SP800-108 KDF over the 3.1.1 pre-auth hash) instead.
    facts["smb_session_key"] = key.hex()
    ctx = preauth_hash(pcap)
    s2c, c2s = smb3_kdf(key, b"SMBS2CCipherKey\x00", ctx), smb3_kdf(key, b"SMBC2SCipherKey\x00", ctx)
    facts.update(preauth_integrity_hash=ctx.hex(), server_to_client_key=s2c.hex(), client_to_server_key=c2s.hex())
    # With a session key given tshark derives from it and ignores the cipher
    # keys; in 4.0 the third field takes the key of client-to-server traffic.
    return facts, 'uat:smb2_seskey_list:%s,"",%s,%s' % (sid, c2s.hex(), s2c.hex())


def smb3_kdf(key, label, context, bits=256):
    """SP800-108 counter mode with HMAC-SHA256, as MS-SMB2 3.1.4.2 uses it."""
    import hmac
    msg = b"\x00\x00\x00\x01" + label + b"\x00" + context + bits.to_bytes(4, "big")
    return hmac.new(key, msg, hashlib.sha256).digest()[:bits // 8]


def preauth_hash(pcap):
    """SMB 3.1.1 pre-authentication integrity hash of the session: SHA-512 over
    NEGOTIATE request and response, then every SESSION_SETUP request and every
    non-final response, from the one TCP connection's byte streams."""
    out = subprocess.run(["tshark", "-r", pcap, "-Y", "tcp.len > 0", "-T", "fields", "-e", "tcp.dstport",
                          "-e", "tcp.payload"], check=True, capture_output=True, text=True).stdout
    streams = {True: b"", False: b""}
    for line in out.splitlines():
        port, data = line.split("\t")
        streams[port == "445"] += bytes.fromhex(data)

    def messages(buf):
        i, out = 0, []
        while i + 4 <= len(buf):
            n = int.from_bytes(buf[i + 1:i + 4], "big")
            out.append(buf[i + 4:i + 4 + n])
            i += 4 + n
        return out
    reqs, resps = messages(streams[True]), messages(streams[False])
    h = b"\x00" * 64
    for m in (reqs[0], resps[0]):
        h = hashlib.sha512(h + m).digest()
    for req, resp in zip(reqs[1:], resps[1:]):
        if int.from_bytes(req[12:14], "little") != 1:
            break
        h = hashlib.sha512(h + req).digest()
        if int.from_bytes(resp[8:12], "little") != 0:  # STATUS_MORE_PROCESSING_REQUIRED
            h = hashlib.sha512(h + resp).digest()
    return h


def tshark(pcap, password=None, keytab=None, seskey_opt=None):
    cmd = ["tshark", "-r", pcap, "-Y", "smb2", "-T", "fields", "-E", "separator=\t", "-E", "occurrence=a",
           "-E", "aggregator=|"]
    if keytab is not None:
        cmd += ["-o", "kerberos.decrypt:TRUE", "-o", "kerberos.file:" + keytab]
        if seskey_opt:
            cmd += ["-o", seskey_opt]
    elif password is not None:
        cmd += ["-o", "ntlmssp.nt_password:" + password]
    for f in FIELDS:
        cmd += ["-e", f]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    rows = []
    for line in out.splitlines():
        vals = line.split("\t")
        rows.append({k: (v.split("|") if v else []) for k, v in zip(FIELDS, vals)})
    return rows


def num(v):
    return int(v, 0)


def main():
    ap = argparse.ArgumentParser()
    for a in ("pcap", "name", "proto", "cipher", "user", "domain", "share", "file", "client-ip",
              "server-ip", "server-name"):
        ap.add_argument("--" + a, required=True)
    ap.add_argument("--bytes", type=int, required=True)
    ap.add_argument("--password", help="NTLM: the account's password (tshark opens the session with it)")
    ap.add_argument("--nt-hash", default="")
    ap.add_argument("--keytab", help="Kerberos: the server's keytab (tshark opens the session with it)")
    ap.add_argument("--keytab-name", help="the keytab's path as the facts name it")
    ap.add_argument("--realm", help="Kerberos: the client's realm")
    ap.add_argument("--tree-host", help="server name in the tree connect path (default: --server-ip)")
    ap.add_argument("--generator", default="pcaps/gen/make-smb3-captures.sh (Debian Samba smbd + smbclient, "
                                            "facts pcaps/gen/smb3_facts.py)")
    ap.add_argument("--auth", default="NTLMSSP (NTLMv2, KEY_EXCH) in SPNEGO; Kerberos off")
    a = ap.parse_args()
    problems = []
    raw = open(a.pcap, "rb").read()

    clear = tshark(a.pcap)
    transform_frames = [num(r["frame.number"][0]) for r in clear if r["smb2.header.transform.signature"]]
    seskey, seskey_opt = (krb_session_key(a.pcap, a.keytab, a.cipher) if a.keytab else (None, None))
    dec = tshark(a.pcap, a.password, a.keytab, seskey_opt)
    messages = []
    dialect = cipher = None
    session_ids = set()
    for r in dec:
        frame = num(r["frame.number"][0])
        encrypted = bool(r["smb2.header.transform.signature"])
        for i, c in enumerate(r["smb2.cmd"]):
            resp = r["smb2.flags.response"][i] in ("1", "True") if i < len(r["smb2.flags.response"]) else False
            m = {"frame": frame, "encrypted": encrypted, "command": CMDS.get(int(c), c), "response": resp,
                 "from": r["ip.src"][0]}
            if i < len(r["smb2.nt_status"]):
                m["status"] = "0x%08x" % num(r["smb2.nt_status"][i])
            if r["smb2.sesid"]:
                sid = num(r["smb2.sesid"][min(i, len(r["smb2.sesid"]) - 1)])
                m["session_id"] = "0x%016x" % sid
                if encrypted:
                    session_ids.add(m["session_id"])
            if r["smb2.tree"] and int(c) == 3:
                m["tree"] = r["smb2.tree"][0]
            if r["smb2.filename"] and int(c) == 5:
                m["file"] = r["smb2.filename"][0]
            if r["smb2.write_length"] and int(c) == 9 and not resp:
                m["length"] = num(r["smb2.write_length"][0])
            if r["smb2.olb.length"] and int(c) == 8 and resp:
                m["length"] = num(r["smb2.olb.length"][0])
            if r["smb.create_options"] and int(c) == 5 and not resp:
                m["create_options"] = "0x%08x" % num(r["smb.create_options"][0])
            messages.append(m)
            if int(c) == 0 and resp and r["smb2.dialect"]:
                dialect = num(r["smb2.dialect"][-1])
                if r["smb2.negotiate_context.cipher_id"]:
                    cipher = num(r["smb2.negotiate_context.cipher_id"][-1])
        if encrypted and not r["smb2.cmd"]:
            problems.append("tshark did not decrypt frame %d" % frame)

    want_dialect = DIALECTS[a.proto]
    want_cipher = CIPHERS[a.cipher]
    if dialect != want_dialect:
        problems.append("dialect %r, wanted %#06x" % (dialect, want_dialect))
    encrypted = want_cipher != 0
    if not encrypted:
        cipher = None
    elif want_dialect == 0x0311 and cipher != want_cipher:
        problems.append("cipher %r, wanted %d" % (cipher, want_cipher))
    if encrypted and want_dialect != 0x0311:
        cipher = CIPHERS["AES-128-CCM"]  # SMB 3.0/3.0.2 have no negotiate context
    dec_frames = sorted({m["frame"] for m in messages if m["encrypted"]})
    if encrypted and (not transform_frames or dec_frames != sorted(transform_frames)):
        problems.append("transform frames %s, decrypted %s" % (transform_frames, dec_frames))
    if not encrypted and transform_frames:
        problems.append("transform frames %s in the clear session" % transform_frames)
    clear_cmds = {m["command"] for m in messages if not m["encrypted"]}
    if encrypted and not clear_cmds <= {"negotiate", "session_setup"}:
        problems.append("commands in clear: %s" % sorted(clear_cmds))
    tree = "\\\\%s\\%s" % (a.tree_host or a.server_ip, a.share)
    if not any(m.get("tree") == tree and m["encrypted"] == encrypted for m in messages):
        problems.append("no tree connect to %s (encrypted: %s)" % (tree, encrypted))
    creates = [m for m in messages if m["command"] == "create" and m.get("file") == a.file and not m["response"]]
    writes = [m for m in messages if m["command"] == "write" and not m["response"] and m["encrypted"] == encrypted]
    reads = [m for m in messages if m["command"] == "read" and m["response"] and m["encrypted"] == encrypted]
    delete_on_close = [m for m in creates if num(m.get("create_options", "0")) & 0x1000]
    if len(creates) < 3 or sum(w.get("length", 0) for w in writes) != a.bytes or \
            sum(r.get("length", 0) for r in reads) != a.bytes or not delete_on_close:
        problems.append("file operations do not match: %d creates, writes %s, reads %s, delete-on-close %d" % (
            len(creates), writes, reads, len(delete_on_close)))
    for s in (a.file, a.share, a.file.split("\\")[-1].split(".")[0]):
        if (s.encode("utf-16-le") in raw) == encrypted:
            problems.append("%r readable in clear: %s" % (s, not encrypted))
    if a.password and len(a.nt_hash) != 32:
        problems.append("no NT hash from pdbedit")
    kerberos = None
    if a.keytab:
        out = subprocess.run(["tshark", "-r", a.pcap, "-o", "kerberos.decrypt:TRUE", "-o", "kerberos.file:" + a.keytab,
                              "-Y", "kerberos.msg_type == 14", "-T", "fields", "-E", "occurrence=f",
                              "-e", "frame.number", "-e", "kerberos.CNameString", "-e", "kerberos.crealm",
                              "-e", "kerberos.etype"], check=True, capture_output=True, text=True).stdout.split()
        kerberos = {"ap_req_frame": int(out[0]) if out else None, "cname": out[1] if len(out) > 1 else None,
                    "crealm": out[2] if len(out) > 2 else None,
                    "ticket_etype": int(out[3]) if len(out) > 3 else None}
        if kerberos["cname"] != a.user or kerberos["crealm"] != a.realm:
            problems.append("tshark did not open the ticket of %s@%s: %s" % (a.user, a.realm, kerberos))
        kerberos.update(seskey)
        kerberos["tshark_session_key_option"] = "-o '%s'" % seskey_opt
        if seskey["cname"] != a.user or seskey["crealm"] != a.realm:
            problems.append("krb_accept opened a ticket of %s@%s" % (seskey["cname"], seskey["crealm"]))
    if not encrypted:
        session_ids = {m["session_id"] for m in messages if m["command"] == "tree_connect"}
    if len(session_ids) != 1:
        problems.append("encrypted session ids %s" % sorted(session_ids))

    def version(cmd):
        return subprocess.run(cmd, capture_output=True, text=True).stdout.strip().splitlines()[0]

    facts = {
        "pcap": a.name + ".pcap",
        "generator": a.generator,
        "samba_version": version(["smbd", "--version"]),
        "tshark_version": version(["tshark", "--version"]),
        "network_mode": "netns",
        "client_ip": a.client_ip,
        "server_ip": a.server_ip,
        "server_name": a.server_name,
        "dialect": "0x%04x" % dialect if dialect is not None else None,
        "dialect_name": a.proto,
        "encrypted": encrypted,
        "cipher": a.cipher,
        "cipher_id": cipher,
        "auth": a.auth,
        "domain": a.domain,
        "user": a.user,
        "password": a.password,
        "nt_hash": a.nt_hash,
        "credentials_line": "%s\\%s:%s" % (a.domain, a.user, a.password) if a.password else None,
        "session_id": sorted(session_ids)[0] if len(session_ids) == 1 else None,
        "share": a.share,
        "tree": tree,
        "files": [
            {"path": a.file, "op": "write", "bytes": a.bytes},
            {"path": a.file, "op": "read", "bytes": a.bytes},
            {"path": a.file, "op": "delete", "bytes": 0},
        ],
        "client_commands": "put payload %s; get %s; del %s" % (a.file, a.file, a.file),
        "transform_frames": sorted(transform_frames),
        "tshark_decrypt_option": "-o 'ntlmssp.nt_password:%s'" % a.password if not a.keytab else
        "-o kerberos.decrypt:TRUE -o 'kerberos.file:%s'" % (a.keytab_name or a.keytab),
        "tshark_messages": messages,
        "pcap_bytes": len(raw),
        "kerberos": kerberos,
        "keytab": (a.keytab_name or a.keytab) if a.keytab else None,
        "realm": a.realm,
        "pcap_sha256": hashlib.sha256(raw).hexdigest(),
        "problems": problems,
    }
    json.dump(facts, sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")
    if problems:
        print("smb3_facts.py: %s: %s" % (a.name, "; ".join(problems)), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
