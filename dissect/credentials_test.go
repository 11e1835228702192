package dissect

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
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
	f.Add([]byte("host/srv.lab.example@LAB.EXAMPLE:aes256:" + strings.Repeat("0f", 32) + "\nsrv$@LAB.EXAMPLE:aes128:" +
		strings.Repeat("e1", 16) + "\nLAB\\SRV$:aes256-cts-hmac-sha1-96:" + strings.Repeat("a5", 32) + "\nu@r.x:pw\n"))
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
		// At most three Kerberos keys a line (RC4, AES256, AES128), each
		// of the length its type needs.
		keys := c.KerberosKeys()
		if len(keys) > 3*(bytes.Count(b, []byte{'\n'})+1) {
			t.Fatalf("%d Kerberos keys from %d lines", len(keys), bytes.Count(b, []byte{'\n'})+1)
		}
		for _, k := range keys {
			if len(k.value) != kerberosKeyLen(k.EType) {
				t.Fatalf("key %v of %d bytes", k, len(k.value))
			}
		}
	})
}

func TestParseCredentialsKerberos(t *testing.T) {
	aes256 := strings.Repeat("ab", 32)
	file := "host/srv.lab.example@LAB.EXAMPLE:aes256:" + aes256 + "\n" +
		"LAB\\srv$:aes128:" + strings.Repeat("cd", 16) + "\r\n" +
		"lab.example\\analyst:Tsch-Dev-2026!\n" + // DNS domain: RC4 + AES256 + AES128
		"LAB\\analyst:nt:EBD03FF0ACF8BE8A1D1BF15943DCD154\n" + // RC4 only, any realm
		"srv$@lab.example:" + testSvcPass + "\n" +
		"LAB\\SRV$:aes256-cts-hmac-sha1-96:" + aes256 + "\n" // secretsdump's line
	c, err := ParseCredentials([]byte(file))
	if err != nil {
		t.Fatal(err)
	}
	// NTLM accounts: the service-key-only lines are not NTLM credentials.
	if c.Len() != 3 {
		t.Errorf("%d NTLM credentials, want 3", c.Len())
	}
	var got []string
	for _, k := range c.KerberosKeys() {
		got = append(got, fmt.Sprintf("%s@%s %d %s", k.Principal, k.Realm, k.EType, k.Source))
	}
	want := []string{
		"host/srv.lab.example@LAB.EXAMPLE 18 credentials line 1",
		"srv$@ 17 credentials line 2",
		"analyst@LAB.EXAMPLE 23 credentials line 3",
		"analyst@LAB.EXAMPLE 18 credentials line 3",
		"analyst@LAB.EXAMPLE 17 credentials line 3",
		"analyst@ 23 credentials line 4",
		"srv$@LAB.EXAMPLE 23 credentials line 5",
		"srv$@LAB.EXAMPLE 18 credentials line 5",
		"srv$@LAB.EXAMPLE 17 credentials line 5",
		"SRV$@ 18 credentials line 6",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("keys\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	keys := c.KerberosKeys()
	if !bytes.Equal(keys[0].value, bytes.Repeat([]byte{0xab}, 32)) {
		t.Error("aes256 key bytes")
	}
	nt := NTHashFromPassword("Tsch-Dev-2026!")
	if !bytes.Equal(keys[2].value, nt[:]) || !bytes.Equal(keys[5].value, nt[:]) {
		t.Error("RC4 key is not the NT hash")
	}
	// The machine password opens tickets encrypted with the keytab's key.
	mit, _, err := ParseKeytab(must(os.ReadFile("testdata/krb5/mit-ktutil.keytab")))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(keys[7].value, mit[0].value) || !bytes.Equal(keys[8].value, mit[1].value) || !bytes.Equal(keys[6].value, mit[2].value) {
		t.Error("srv$ password keys differ from MIT ktutil's")
	}

	for _, bad := range []string{
		"x@R:aes256:" + strings.Repeat("ab", 16), // short
		"x@R:aes128:" + strings.Repeat("zz", 16), // not hex
		"x@R:aes256:" + strings.Repeat("ab", 33), // long
	} {
		_, err := ParseCredentials([]byte("# c\n" + bad))
		if err == nil || !strings.Contains(err.Error(), "line 2") || strings.Contains(err.Error(), "abab") || strings.Contains(err.Error(), "zzzz") {
			t.Errorf("%q: %v", bad, err)
		}
	}
}
