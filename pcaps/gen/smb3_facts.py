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


def tshark(pcap, password=None):
    cmd = ["tshark", "-r", pcap, "-Y", "smb2", "-T", "fields", "-E", "separator=\t", "-E", "occurrence=a",
           "-E", "aggregator=|"]
    if password is not None:
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
    for a in ("pcap", "name", "proto", "cipher", "user", "domain", "password", "share", "file", "client-ip", "nt-hash",
              "server-ip", "server-name"):
        ap.add_argument("--" + a, required=True)
    ap.add_argument("--bytes", type=int, required=True)
    a = ap.parse_args()
    problems = []
    raw = open(a.pcap, "rb").read()

    clear = tshark(a.pcap)
    transform_frames = [num(r["frame.number"][0]) for r in clear if r["smb2.header.transform.signature"]]
    dec = tshark(a.pcap, a.password)
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
    tree = "\\\\%s\\%s" % (a.server_ip, a.share)
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
    for s in (a.file, a.share, "tschsmb3"):
        if (s.encode("utf-16-le") in raw) == encrypted:
            problems.append("%r readable in clear: %s" % (s, not encrypted))
    if len(a.nt_hash) != 32:
        problems.append("no NT hash from pdbedit")
    if not encrypted:
        session_ids = {m["session_id"] for m in messages if m["command"] == "tree_connect"}
    if len(session_ids) != 1:
        problems.append("encrypted session ids %s" % sorted(session_ids))

    def version(cmd):
        return subprocess.run(cmd, capture_output=True, text=True).stdout.strip().splitlines()[0]

    facts = {
        "pcap": a.name + ".pcap",
        "generator": "pcaps/gen/make-smb3-captures.sh (Debian Samba smbd + smbclient, facts pcaps/gen/smb3_facts.py)",
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
        "auth": "NTLMSSP (NTLMv2, KEY_EXCH) in SPNEGO; Kerberos off",
        "domain": a.domain,
        "user": a.user,
        "password": a.password,
        "nt_hash": a.nt_hash,
        "credentials_line": "%s\\%s:%s" % (a.domain, a.user, a.password),
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
        "tshark_decrypt_option": "-o 'ntlmssp.nt_password:%s'" % a.password,
        "tshark_messages": messages,
        "pcap_bytes": len(raw),
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
