package main

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// krbFacts is the part of a Kerberos capture's facts the tests read.
type krbFacts struct {
	Keytab string
	Client struct{ Command string }
	PDUs   []struct {
		PDU       string `json:"pdu"`
		AuthLevel *int   `json:"auth_level"`
	} `json:"dcerpc_pdus"`
}

func readKrbFacts(t *testing.T, name string) krbFacts {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "pcaps", name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	var f krbFacts
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	if f.Keytab == "" || f.Client.Command == "" {
		t.Fatalf("%s: facts lack the keytab or the command", name)
	}
	return f
}

// sealedPDUs counts the facts' sealed request/response PDUs.
func (f krbFacts) sealedPDUs() int {
	n := 0
	for _, p := range f.PDUs {
		if p.AuthLevel != nil && *p.AuthLevel == 6 && (p.PDU == "request" || p.PDU == "response" || p.PDU == "fault") {
			n++
		}
	}
	return n
}

// copyKeytab copies the lab keytab into a temporary file of the given mode.
func copyKeytab(t *testing.T, src string, mode os.FileMode) (string, []byte) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", src))
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "lab.keytab")
	if err := os.WriteFile(p, data, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p, data
}

// noKeyBytes fails when out holds, in hex, any 16 consecutive bytes of the
// keytab: every key of it is at least that long.
func noKeyBytes(t *testing.T, out string, keytab []byte) {
	t.Helper()
	low := strings.ToLower(out)
	for i := 0; i+16 <= len(keytab); i++ {
		if strings.Contains(low, hex.EncodeToString(keytab[i:i+16])) {
			t.Fatalf("output holds keytab bytes %d..%d", i, i+16)
		}
	}
}

// TestKeytabReplayStatsFile opens the Kerberos lab's sealed capture with
// --keytab and checks the --stats-file object: every sealed PDU the facts
// list opened under kerberos, none failed, and the dcerpc section is
// exactly the documented one.
func TestKeytabReplayStatsFile(t *testing.T) {
	const name = "krb-impacket-schtask-tcp-aes256"
	f := readKrbFacts(t, name)
	kt, raw := copyKeytab(t, f.Keytab, 0o600)
	stats := filepath.Join(t.TempDir(), "stats.json")
	var out, errb bytes.Buffer
	pcap := filepath.Join("..", "..", "pcaps", name+".pcap")
	if rc := run([]string{"replay", "--keytab", kt, "--stats-file", stats, pcap}, &out, &errb); rc != 0 {
		t.Fatalf("rc %d: %s", rc, errb.String())
	}
	if !strings.Contains(out.String(), `"command":"`+f.Client.Command+`"`) {
		t.Errorf("registration not opened:\n%.400s", out.String())
	}
	b, err := os.ReadFile(stats)
	if err != nil {
		t.Fatal(err)
	}
	noKeyBytes(t, out.String()+errb.String()+string(b), raw)
	var top map[string]json.RawMessage
	if err := json.Unmarshal(b, &top); err != nil {
		t.Fatalf("stats file is not one JSON object: %v", err)
	}
	var dcerpc map[string]any
	if err := json.Unmarshal(top["dcerpc"], &dcerpc); err != nil {
		t.Fatal(err)
	}
	if len(dcerpc) != 3 {
		t.Errorf("dcerpc section %v: want exactly sealed_pdus, unsealed_pdus, unseal_failures", dcerpc)
	}
	var c struct {
		DCERPC struct {
			SealedPDUs     int                          `json:"sealed_pdus"`
			UnsealedPDUs   struct{ NTLM, Kerberos int } `json:"unsealed_pdus"`
			UnsealFailures int                          `json:"unseal_failures"`
		}
		Kerberos struct {
			TicketsOpened int `json:"tickets_opened"`
		}
	}
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	want := f.sealedPDUs()
	if want == 0 || c.DCERPC.SealedPDUs != want || c.DCERPC.UnsealedPDUs.Kerberos != want || c.DCERPC.UnsealedPDUs.NTLM != 0 ||
		c.DCERPC.UnsealFailures != 0 || c.Kerberos.TicketsOpened != 1 {
		t.Errorf("counters %+v, want %d sealed PDUs all opened with Kerberos from 1 ticket", c, want)
	}
}

// TestKeytabEnvironment takes keytabs from TSCHSENSOR_KEYTAB, a list of
// paths; a missing one stops the run naming the file only.
func TestKeytabEnvironment(t *testing.T) {
	const name = "krb-impacket-schtask-tcp-rc4"
	f := readKrbFacts(t, name)
	kt, _ := copyKeytab(t, f.Keytab, 0o600)
	pcap := filepath.Join("..", "..", "pcaps", name+".pcap")
	t.Setenv(keytabEnv, kt+string(filepath.ListSeparator)+kt)
	var out, errb bytes.Buffer
	if rc := run([]string{"replay", "--quiet", pcap}, &out, &errb); rc != 0 {
		t.Fatalf("rc %d: %s", rc, errb.String())
	}
	if !strings.Contains(out.String(), `"command":"`+f.Client.Command+`"`) {
		t.Errorf("registration not opened with $%s:\n%.400s", keytabEnv, out.String())
	}
	missing := filepath.Join(t.TempDir(), "absent.keytab")
	t.Setenv(keytabEnv, missing)
	out.Reset()
	errb.Reset()
	if rc := run([]string{"replay", "--quiet", pcap}, &out, &errb); rc != 2 || !strings.Contains(errb.String(), "absent.keytab") {
		t.Errorf("missing keytab: rc %d, stderr %q", rc, errb.String())
	}
}

// TestLoadKerberosKeys: loose modes are warned about, garbage is refused
// without being quoted.
func TestLoadKerberosKeys(t *testing.T) {
	f := readKrbFacts(t, "krb-impacket-schtask-tcp-aes256")
	loose, raw := copyKeytab(t, f.Keytab, 0o644)
	var warn bytes.Buffer
	ks, err := loadKerberosKeys([]string{loose}, nil, &warn)
	if err != nil || ks == nil || ks.Len() == 0 {
		t.Fatalf("keys %v, err %v", ks, err)
	}
	if !strings.Contains(warn.String(), "chmod 600") {
		t.Errorf("mode 0644 not warned about: %q", warn.String())
	}
	noKeyBytes(t, warn.String(), raw)

	tight, _ := copyKeytab(t, f.Keytab, 0o600)
	warn.Reset()
	if _, err := loadKerberosKeys([]string{tight}, nil, &warn); err != nil || warn.Len() != 0 {
		t.Errorf("mode 0600: err %v, warning %q", err, warn.String())
	}

	bad := filepath.Join(t.TempDir(), "bad.keytab")
	secret := "\x05\x02not-a-keytab-SECRETSECRET"
	if err := os.WriteFile(bad, []byte(secret), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = loadKerberosKeys([]string{bad}, nil, &warn)
	if err == nil || strings.Contains(err.Error(), "SECRET") || !strings.Contains(err.Error(), "bad.keytab") {
		t.Errorf("garbage keytab: %v", err)
	}
}
