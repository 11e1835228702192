package sensor

import (
	"os"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/tschsensor/tschsensor/dissect"
)

// authFuzzSeed adds the DCE-RPC/TCP conversation of a project capture (the
// server side on port) as a seed, re-addressed to port 135 by the target.
func authFuzzSeed(f *testing.F, path string, port uint16) {
	dirs, data := plTCPPayloads(f, path, port)
	if len(data) > 0 {
		f.Add(plEncodeConversation(dirs, data), uint8(0))
		f.Add(plEncodeConversation(dirs, data), uint8(7))
	}
}

// authFuzzLabSecrets returns the lab's password and keytab keys, the
// secrets the sealed captures were made with.
func authFuzzLabSecrets(f *testing.F) (*dissect.Credentials, *dissect.KerberosKeys) {
	creds, err := dissect.ParseCredentials([]byte(`LAB\alice:Tsch-Lab-2026!`))
	if err != nil {
		f.Fatal(err)
	}
	kt, err := os.ReadFile("../pcaps/keys/lab.keytab")
	if err != nil {
		f.Fatal(err)
	}
	keys, _, err := dissect.ParseKeytab(kt)
	if err != nil {
		f.Fatal(err)
	}
	ks := &dissect.KerberosKeys{}
	ks.Add(keys...)
	return creds, ks
}

// FuzzWorkerSecrets is FuzzWorker with the lab's password and keytab
// supplied, seeded with sealed NTLM and Kerberos conversations: the security
// contexts, ticket opening and unsealing of every PDU run on hostile bytes.
// The worker must neither panic nor lose count of packets, and every sealed
// PDU is either opened or counted as failed or unopened.
func FuzzWorkerSecrets(f *testing.F) {
	creds, ks := authFuzzLabSecrets(f)
	authFuzzSeed(f, "../pcaps/impacket-schtask-tcp-interleaved-sealed.pcap", 49667)
	authFuzzSeed(f, "../pcaps/impacket-schtask-tcp-signed.pcap", 49667)
	authFuzzSeed(f, "../pcaps/krb-impacket-schtask-tcp-aes256.pcap", 49667)
	authFuzzSeed(f, "../pcaps/krb-gomsrpc-schtask-tcp-rc4.pcap", 49667)
	authFuzzSeed(f, "../pcaps/impacket-schtask-tcp-fault-sealed.pcap", 49667)
	authFuzzSeed(f, "../pcaps/krb-impacket-schtask-tcp-fault-aes256.pcap", 49667)
	f.Fuzz(func(t *testing.T, in []byte, split uint8) {
		if len(in) > plFuzzMaxInput {
			in = in[:plFuzzMaxInput]
		}
		dirs, data := plConversation(in)
		w := NewWorker(Options{PanicHook: func(r any) { panic(r) }, Credentials: creds, KerberosKeys: ks}, &plRecorder{}, nil)
		w.SetFile("fuzz")
		frames := plDrive(w, 135, dirs, data, split)
		w.Flush()
		st := w.Stats()
		if st.Packets != uint64(frames) {
			t.Fatalf("%d frames in, stats say %d packets", frames, st.Packets)
		}
		a := st.Auth
		if a.UnsealedNTLM+a.UnsealedKerberos+a.UnsealFailures > a.SealedPDUs || a.SignatureFailures > a.SignedPDUs {
			t.Fatalf("counters inconsistent: %+v", a)
		}
	})
}

// FuzzSecContext feeds a security context arbitrary tokens in both
// directions, as bind/bind_ack/auth3 or session setups carry them, with the
// lab's password and keytab supplied: seeded with the tokens of the sealed
// captures (NTLMSSP, Kerberos AP-REQ/AP-REP, SPNEGO). It must not panic, and
// whatever it settles on must be consistent: keys only for an established
// exchange, an identity once established.
func FuzzSecContext(f *testing.F) {
	creds, ks := authFuzzLabSecrets(f)
	// Seeds: the auth values of each capture's bind, bind_ack and auth3,
	// joined with a length prefix.
	for _, p := range []string{"../pcaps/impacket-schtask-tcp-interleaved-sealed.pcap", "../pcaps/krb-impacket-schtask-tcp-aes256.pcap",
		"../pcaps/krb-gomsrpc-schtask-tcp-spnego-aes256.pcap"} {
		var seed []byte
		var fr frame
		var tcp layers.TCP
		for _, pk := range plLoad(f, p) {
			if decodeFrame(pk.data, pk.link, &fr) != decTCP || tcp.DecodeFromBytes(fr.tcp, gopacket.NilDecodeFeedback) != nil {
				continue
			}
			pl := tcp.Payload
			var h dissect.DCERPCHeader
			var tr dissect.AuthTrailer
			if ok, _ := dissect.PeekDCERPC(pl, &h); !ok || int(h.FragLen) != len(pl) {
				continue
			}
			if h.PType != dissect.PTypeBind && h.PType != dissect.PTypeBindAck && h.PType != dissect.PTypeAuth3 &&
				h.PType != dissect.PTypeAlterContext && h.PType != dissect.PTypeAlterCtxResp {
				continue
			}
			if ok, err := dissect.ParseAuthTrailer(pl, &h, &tr); !ok || err != nil {
				continue
			}
			dir := byte(0)
			if tcp.SrcPort == 49667 {
				dir = 1
			}
			seed = append(seed, dir, byte(len(tr.Value)>>8), byte(len(tr.Value)))
			seed = append(seed, tr.Value...)
		}
		if len(seed) > 0 {
			f.Add(seed)
		}
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		st := newStats()
		env := authEnv{creds: creds, keys: ks, stats: &st, anomaly: st.anomaly}
		a := newSecContext(fromRPCBind)
		for len(in) >= 3 {
			fromClient := in[0]&1 == 0
			n := int(in[1])<<8 | int(in[2])
			in = in[3:]
			n = min(n, len(in))
			tok := in[:n]
			in = in[n:]
			a.token(tok, fromClient, env)
			a.establish(env, "ntlm_wrong_credentials")
		}
		if a.protector != nil && !a.established {
			t.Fatal("keys for an exchange that did not complete")
		}
		if a.established && a.identity() == nil {
			t.Fatal("established without an identity")
		}
	})
}
