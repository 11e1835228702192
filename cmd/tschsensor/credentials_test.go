package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCredentialFromEnvironment opens the project's sealed atexec capture
// with the single secret given in TSCHSENSOR_CREDENTIAL, and rejects a
// malformed one at start-up without echoing it.
func TestCredentialFromEnvironment(t *testing.T) {
	pcap := filepath.Join("..", "..", "pcaps", "impacket-atexec-smb2.pcap")
	b, err := os.ReadFile(filepath.Join("..", "..", "pcaps", "impacket-atexec-smb2.json"))
	if err != nil {
		t.Fatal(err)
	}
	var facts struct{ Domain, User, Password string }
	if err := json.Unmarshal(b, &facts); err != nil {
		t.Fatal(err)
	}
	t.Setenv(credentialEnv, facts.Domain+`\`+facts.User+":"+facts.Password)
	var out, errb bytes.Buffer
	if rc := run([]string{"replay", "--quiet", pcap}, &out, &errb); rc != 0 {
		t.Fatalf("rc %d: %s", rc, errb.String())
	}
	if !strings.Contains(out.String(), `"decrypted":true`) || !strings.Contains(out.String(), `"command":"cmd.exe"`) {
		t.Errorf("sealed registration not opened:\n%.400s", out.String())
	}
	if strings.Contains(out.String()+errb.String(), facts.Password) {
		t.Error("the password appears in the output")
	}

	t.Setenv(credentialEnv, "no-colon-secret-value")
	out.Reset()
	errb.Reset()
	if rc := run([]string{"replay", "--quiet", pcap}, &out, &errb); rc != 2 {
		t.Errorf("malformed secret: rc %d, want 2", rc)
	}
	if strings.Contains(errb.String(), "no-colon-secret-value") {
		t.Errorf("error echoes the secret: %s", errb.String())
	}
}
