package sensor

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/tschsensor/tschsensor/detect"
	"github.com/tschsensor/tschsensor/dissect"
)

// The SMB3 captures (pcaps/smb3-*.pcap) are Debian Samba's smbclient
// putting, reading back and deleting ADMIN$\Temp\tschsmb3.tmp on smbd with
// encryption required, one capture per dialect and cipher, plus the same
// session signed only (smb3-311-signed) as the clear reference. The facts
// beside each (pcaps/gen/smb3_facts.py) come from tshark, which decrypted
// every transform message with the password: they are the oracle here.

type smb3Facts struct {
	name            string
	Pcap            string `json:"pcap"`
	Dialect         string `json:"dialect"`
	Cipher          string `json:"cipher"`
	Encrypted       bool   `json:"encrypted"`
	Domain          string `json:"domain"`
	User            string `json:"user"`
	Password        string `json:"password"`
	NTHash          string `json:"nt_hash"`
	SessionID       string `json:"session_id"`
	Share           string `json:"share"`
	Tree            string `json:"tree"`
	TransformFrames []int  `json:"transform_frames"`
	Files           []struct {
		Path  string `json:"path"`
		Op    string `json:"op"`
		Bytes uint64 `json:"bytes"`
	} `json:"files"`
}

// smb3Captures loads the facts of every SMB3 capture, or skips the test.
func smb3Captures(t *testing.T) []*smb3Facts {
	t.Helper()
	names, _ := filepath.Glob("../pcaps/smb3-*.json")
	var out []*smb3Facts
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil {
			t.Fatal(err)
		}
		f := &smb3Facts{name: strings.TrimSuffix(filepath.Base(n), ".json")}
		if err := json.Unmarshal(b, f); err != nil {
			t.Fatalf("%s: %v", n, err)
		}
		if _, err := os.Stat("../pcaps/" + f.Pcap); err != nil {
			t.Skipf("%s: capture missing (%v); regenerate with sudo bash pcaps/gen/make-smb3-captures.sh", n, err)
		}
		out = append(out, f)
	}
	if len(out) == 0 {
		t.Skip("no pcaps/smb3-*.pcap: regenerate with sudo bash pcaps/gen/make-smb3-captures.sh")
	}
	return out
}

func (f *smb3Facts) creds(t *testing.T, secret string) *dissect.Credentials {
	t.Helper()
	c, err := dissect.ParseCredentials([]byte(f.Domain + `\` + f.User + ":" + secret))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

type smb3Recorder struct {
	files []*detect.FileOp
	calls []*detect.Call
}

func (r *smb3Recorder) Call(c *detect.Call)   { r.calls = append(r.calls, c) }
func (r *smb3Recorder) File(f *detect.FileOp) { r.files = append(r.files, f) }

// smb3Replay runs one capture through a worker. mangle, if set, may change a
// copy of each frame's bytes (frame numbers from 1) before the worker sees it.
func smb3Replay(t *testing.T, opt Options, f *smb3Facts, mangle func(frame int, data []byte)) (*smb3Recorder, *Stats) {
	t.Helper()
	rec := &smb3Recorder{}
	w := NewWorker(opt, rec, nil)
	w.SetFile(f.Pcap)
	eachPacket(t, "../pcaps/"+f.Pcap, func(frame int, data []byte, ci gopacket.CaptureInfo, link layers.LinkType) {
		if mangle != nil {
			data = append([]byte(nil), data...)
			mangle(frame, data)
		}
		w.Packet(data, ci, link)
	})
	w.Flush()
	return rec, w.Stats()
}

// smb3Op is the part of a FileOp that must not depend on whether the
// session was encrypted.
type smb3Op struct {
	Op, Path, Share, Tree, User, Domain string
	Bytes                               uint64
	Version                             int
}

func smb3Ops(ops []*detect.FileOp) []smb3Op {
	var out []smb3Op
	for _, o := range ops {
		s := smb3Op{Op: o.Op, Path: o.Path, Share: o.Share, Tree: o.SMB.Tree, Bytes: o.Bytes, Version: o.SMB.Version}
		if o.User != nil {
			s.User, s.Domain = o.User.User, o.User.Domain
		}
		out = append(out, s)
	}
	return out
}

// checkFileOps compares what the sensor reported with what the client did.
func (f *smb3Facts) checkFileOps(t *testing.T, rec *smb3Recorder) {
	t.Helper()
	if len(rec.files) != len(f.Files) {
		t.Errorf("%d file operations, want %d: %+v", len(rec.files), len(f.Files), smb3Ops(rec.files))
	}
	dialect, _ := strconv.ParseUint(strings.TrimPrefix(f.Dialect, "0x"), 16, 16)
	sid, _ := strconv.ParseUint(strings.TrimPrefix(f.SessionID, "0x"), 16, 64)
	for _, want := range f.Files {
		var got *detect.FileOp
		for _, o := range rec.files {
			if o.Op == want.Op {
				got = o
			}
		}
		if got == nil {
			t.Errorf("no %s of %s", want.Op, want.Path)
			continue
		}
		if got.Path != want.Path || got.Bytes != want.Bytes || got.Share != f.Share || got.SMB.Tree != f.Tree {
			t.Errorf("%s: path %q bytes %d share %q tree %q, want %q %d %q %q", want.Op, got.Path, got.Bytes,
				got.Share, got.SMB.Tree, want.Path, want.Bytes, f.Share, f.Tree)
		}
		if got.SMB.Dialect != dissect.DialectName(uint16(dialect)) || got.SMB.SessionID != sid {
			t.Errorf("%s: dialect %q session %#x, want %q %s", want.Op, got.SMB.Dialect, got.SMB.SessionID,
				dissect.DialectName(uint16(dialect)), f.SessionID)
		}
		if got.User == nil || got.User.User != f.User || got.User.Domain != f.Domain {
			t.Errorf("%s: user %+v, want %s\\%s", want.Op, got.User, f.Domain, f.User)
		}
	}
	if len(rec.calls) != 0 {
		t.Errorf("%d RPC calls from a file copy", len(rec.calls))
	}
}

// TestSMB3Decrypt: with the account's password (or NT hash) every transform
// message of every dialect/cipher opens and the file copy is reported exactly
// as in the signed-only session; without credentials nothing opens and
// nothing is reported as failing; a wrong password is reported once.
func TestSMB3Decrypt(t *testing.T) {
	caps := smb3Captures(t)
	var ref *smb3Facts
	for _, f := range caps {
		if !f.Encrypted {
			ref = f
		}
	}
	if ref == nil {
		t.Fatal("no signed-only reference capture (smb3-311-signed) among pcaps/smb3-*")
	}
	refRec, refSt := smb3Replay(t, Options{}, ref, nil)
	if refSt.SMB3Encrypted != 0 {
		t.Fatalf("%s: %d transform messages in the clear reference", ref.name, refSt.SMB3Encrypted)
	}
	t.Run(ref.name, func(t *testing.T) {
		ref.checkFileOps(t, refRec)
		if len(refSt.Anomalies) != 0 {
			t.Errorf("anomalies %v", refSt.Anomalies)
		}
	})
	refOps := smb3Ops(refRec.files)

	for _, f := range caps {
		if !f.Encrypted {
			continue
		}
		n := uint64(len(f.TransformFrames))
		if n == 0 {
			t.Fatalf("%s: facts list no transform frames", f.name)
		}
		t.Run(f.name, func(t *testing.T) {
			for _, secret := range []string{f.Password, "nt:" + f.NTHash} {
				name := "password"
				if strings.HasPrefix(secret, "nt:") {
					name = "nt-hash"
				}
				t.Run(name, func(t *testing.T) {
					rec, st := smb3Replay(t, Options{Credentials: f.creds(t, secret)}, f, nil)
					if st.SMB3Encrypted != n || st.SMB3Decrypted != n || st.SMB3EncSessions != 1 {
						t.Errorf("encrypted %d decrypted %d in %d sessions, want %d %d in 1",
							st.SMB3Encrypted, st.SMB3Decrypted, st.SMB3EncSessions, n, n)
					}
					if len(st.Anomalies) != 0 {
						t.Errorf("anomalies %v", st.Anomalies)
					}
					f.checkFileOps(t, rec)
					if got := smb3Ops(rec.files); !reflect.DeepEqual(got, refOps) {
						t.Errorf("decrypted file operations differ from the clear session:\n got %+v\nwant %+v", got, refOps)
					}
				})
			}
			t.Run("no-credentials", func(t *testing.T) {
				rec, st := smb3Replay(t, Options{}, f, nil)
				if st.SMB3Encrypted != n || st.SMB3Decrypted != 0 || st.SMB3EncSessions != 1 {
					t.Errorf("encrypted %d decrypted %d in %d sessions, want %d 0 in 1",
						st.SMB3Encrypted, st.SMB3Decrypted, st.SMB3EncSessions, n)
				}
				if len(st.Anomalies) != 0 {
					t.Errorf("anomalies %v", st.Anomalies)
				}
				if len(rec.files) != 0 || len(rec.calls) != 0 {
					t.Errorf("%d file operations, %d calls from an encrypted session without keys", len(rec.files), len(rec.calls))
				}
			})
			t.Run("other-account", func(t *testing.T) {
				c, err := dissect.ParseCredentials([]byte(f.Domain + `\someone-else:` + f.Password))
				if err != nil {
					t.Fatal(err)
				}
				rec, st := smb3Replay(t, Options{Credentials: c}, f, nil)
				if st.SMB3Decrypted != 0 || len(st.Anomalies) != 0 || len(rec.files) != 0 {
					t.Errorf("decrypted %d, anomalies %v, %d file operations", st.SMB3Decrypted, st.Anomalies, len(rec.files))
				}
			})
			t.Run("wrong-password", func(t *testing.T) {
				rec, st := smb3Replay(t, Options{Credentials: f.creds(t, f.Password+"x")}, f, nil)
				if st.SMB3Decrypted != 0 || st.SMB3Encrypted != n {
					t.Errorf("encrypted %d decrypted %d, want %d 0", st.SMB3Encrypted, st.SMB3Decrypted, n)
				}
				want := map[string]uint64{"smb3_wrong_credentials": 1}
				if !reflect.DeepEqual(st.Anomalies, want) {
					t.Errorf("anomalies %v, want %v", st.Anomalies, want)
				}
				if len(rec.files) != 0 {
					t.Errorf("%d file operations with a wrong password", len(rec.files))
				}
			})
			t.Run("tampered", func(t *testing.T) {
				// Flip the last ciphertext byte of the last two transform
				// messages: each fails authentication, the failure is
				// reported once, every other message still opens.
				last := map[int]bool{}
				for _, fr := range f.TransformFrames[len(f.TransformFrames)-2:] {
					last[fr] = true
				}
				rec, st := smb3Replay(t, Options{Credentials: f.creds(t, f.Password)}, f, func(frame int, data []byte) {
					if last[frame] {
						data[len(data)-1] ^= 0x80
					}
				})
				if st.SMB3Decrypted != n-2 {
					t.Errorf("decrypted %d, want %d", st.SMB3Decrypted, n-2)
				}
				want := map[string]uint64{"smb3_decrypt_failed": 1}
				if !reflect.DeepEqual(st.Anomalies, want) {
					t.Errorf("anomalies %v, want %v", st.Anomalies, want)
				}
				f.checkFileOps(t, rec)
			})
		})
	}
}
