package dissect

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

const testCredFile = "# lab accounts\r\n" +
	"LAB\\analyst:Tsch-Dev-2026!\r\n" +
	"\n" +
	"lab.example\\analyst:nt:EBD03FF0ACF8BE8A1D1BF15943DCD154\n" +
	"\\analyst:pass:with:colons \n" +
	"svc:Password\n" +
	"OTHER\\analyst:x\n"

func TestParseCredentials(t *testing.T) {
	c, err := ParseCredentials([]byte(testCredFile))
	if err != nil {
		t.Fatal(err)
	}
	if c.Len() != 5 {
		t.Fatalf("Len %d, want 5", c.Len())
	}
	got := c.Lookup("lab", "ANALYST")
	if len(got) != 3 {
		t.Fatalf("%d candidates: %v", len(got), got)
	}
	// Exact domain, then first-label match, then any-domain.
	if got[0].Domain != "LAB" || got[1].Domain != "lab.example" || got[2].Domain != "" {
		t.Errorf("order %v", got)
	}
	if got[0].NTHash != got[1].NTHash {
		t.Error("password and nt: forms of the same secret differ")
	}
	if got[2].NTHash != NTHashFromPassword("pass:with:colons ") {
		t.Error("password with ':' and trailing space not kept verbatim")
	}
	if got[1].HasLMHash || !got[0].HasLMHash {
		t.Errorf("LM hash known: %v %v", got[0].HasLMHash, got[1].HasLMHash)
	}
	if s := c.Lookup("ANY", "svc"); len(s) != 1 || s[0].NTHash != NTHashFromPassword("Password") {
		t.Errorf("svc: %v", s)
	}
	if s := c.Lookup("LAB", "nobody"); len(s) != 0 {
		t.Errorf("nobody: %v", s)
	}
	var nilCreds *Credentials
	if nilCreds.Len() != 0 || nilCreds.Lookup("a", "b") != nil {
		t.Error("nil Credentials not empty")
	}
}

func TestParseCredentialsErrors(t *testing.T) {
	for _, tt := range []struct {
		in, line, secret string
	}{
		{"# c\nLAB\\user\n", "line 2", ""},
		{"LAB\\user:nt:0123456789abcdef0123456789abcdeZ\n", "line 1", "0123456789abcdef0123456789abcdeZ"},
		{"ok:pw\nLAB\\user:nt:00112233\n", "line 2", "00112233"},
		{"LAB\\:secretpw\n", "line 1", "secretpw"},
		{"u:" + strings.Repeat("s", MaxCredentialLineLen) + "\n", "line 1", "sss"},
	} {
		_, err := ParseCredentials([]byte(tt.in))
		if err == nil {
			t.Errorf("%q accepted", tt.in)
			continue
		}
		if !strings.Contains(err.Error(), tt.line) {
			t.Errorf("error %q does not name %s", err, tt.line)
		}
		if tt.secret != "" && strings.Contains(err.Error(), tt.secret) {
			t.Errorf("error %q echoes the secret", err)
		}
	}
}

// No formatting path shows the hash.
func TestCredentialRedacted(t *testing.T) {
	c := Credential{Domain: "LAB", User: "analyst", NTHash: NTHashFromPassword("Tsch-Dev-2026!"), HasLMHash: true}
	c.LMHash[0] = 0xab
	h := hex.EncodeToString(c.NTHash[:])
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("cred", "c", c)
	for _, s := range []string{fmt.Sprint(c), fmt.Sprintf("%v %+v %#v %s", c, c, c, c), buf.String()} {
		if strings.Contains(strings.ToLower(s), h) || strings.Contains(s, "[") || !strings.Contains(s, "analyst") {
			t.Errorf("leak or missing account: %s", s)
		}
	}
}

func FuzzParseCredentials(f *testing.F) {
	f.Add([]byte(testCredFile))
	f.Add([]byte("LAB\\u:nt:00112233445566778899aabbccddeeff"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseCredentials(b)
		if err != nil {
			if c != nil {
				t.Fatal("credentials with an error")
			}
			return
		}
		if c.Len() > bytes.Count(b, []byte{'\n'})+1 {
			t.Fatalf("%d credentials from %d lines", c.Len(), bytes.Count(b, []byte{'\n'})+1)
		}
		for _, cr := range c.list {
			if len(c.Lookup(cr.Domain, cr.User)) == 0 {
				t.Fatalf("%v not found by its own names", cr)
			}
		}
	})
}
