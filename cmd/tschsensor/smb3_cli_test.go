package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestReplaySMB3Credentials: `tschsensor replay --credentials F` on an
// SMB3-encrypted capture reports in its stderr summary how many transform
// messages it opened, and names a wrong password as an anomaly.
func TestReplaySMB3Credentials(t *testing.T) {
	const name = "smb3-311-aes128gcm"
	pcap := filepath.Join("..", "..", "pcaps", name+".pcap")
	raw, err := os.ReadFile(filepath.Join("..", "..", "pcaps", name+".json"))
	if err != nil {
		t.Skipf("%v: regenerate with sudo bash pcaps/gen/make-smb3-captures.sh", err)
	}
	if _, err := os.Stat(pcap); err != nil {
		t.Skipf("%v: regenerate with sudo bash pcaps/gen/make-smb3-captures.sh", err)
	}
	var facts struct {
		Credentials     string `json:"credentials_line"`
		Domain, User    string
		TransformFrames []int `json:"transform_frames"`
	}
	if err := json.Unmarshal(raw, &facts); err != nil {
		t.Fatal(err)
	}
	n := len(facts.TransformFrames)
	for _, tc := range []struct {
		name, creds string
		want        []string
	}{
		{"password", facts.Credentials, []string{
			fmt.Sprintf("SMB3 encrypted: %d messages in 1 sessions, %d decrypted with supplied credentials", n, n),
			"file ops 3,"}},
		{"wrong-password", facts.Domain + `\` + facts.User + ":not-the-password", []string{
			fmt.Sprintf("SMB3 encrypted: %d messages in 1 sessions, 0 decrypted with supplied credentials", n),
			"smb3_wrong_credentials=1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := filepath.Join(t.TempDir(), "creds")
			if err := os.WriteFile(f, []byte(tc.creds+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			var stdout, stderr bytes.Buffer
			if rc := run([]string{"replay", "--credentials", f, pcap}, &stdout, &stderr); rc != 0 {
				t.Fatalf("exit %d: %s", rc, stderr.String())
			}
			for _, w := range tc.want {
				if !strings.Contains(stderr.String(), w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr.String())
				}
			}
			if strings.Contains(stderr.String(), "Tsch-Smb3") {
				t.Errorf("the password appears on stderr")
			}
		})
	}
}
