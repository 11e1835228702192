package sensor

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/tschsensor/tschsensor/detect"
	"github.com/tschsensor/tschsensor/dissect"
	"github.com/tschsensor/tschsensor/sensor/output"
)

// sealedFacts is what a capture's facts file (pcaps/gen/facts.py, or the
// shared atexec-sealed-dev.json) says about its DCE-RPC PDUs and secret.
type sealedFacts struct {
	name                   string
	pcap                   string
	User, Domain, Password string
	Keytab                 string
	PDUs                   []factPDU `json:"dcerpc_pdus"`
	Frames                 []factPDU `json:"dcerpc_frames"`
}

type factPDU struct {
	PDU       string `json:"pdu"`
	AuthLevel *int   `json:"auth_level"`
}

// sealed counts the sealed (auth level 6) request, response and fault PDUs
// the facts list, as tshark dissected them.
func (f *sealedFacts) sealed() int {
	n := 0
	for _, p := range append(f.PDUs, f.Frames...) {
		if p.AuthLevel != nil && *p.AuthLevel == dissect.AuthLevelPrivacy && (p.PDU == "request" || p.PDU == "response" || p.PDU == "fault") {
			n++
		}
	}
	return n
}

// secret returns the options that open the capture: the facts' password or
// keytab, and the mechanism that then opens it.
func (f *sealedFacts) secret(t *testing.T) (Options, string) {
	t.Helper()
	if f.Keytab != "" {
		data, err := os.ReadFile(filepath.Join("..", f.Keytab))
		if err != nil {
			t.Fatal(err)
		}
		keys, _, err := dissect.ParseKeytab(data)
		if err != nil {
			t.Fatalf("%s: %v", f.Keytab, err)
		}
		ks := &dissect.KerberosKeys{}
		ks.Add(keys...)
		return Options{KerberosKeys: ks}, mechKerberos
	}
	if f.Password == "" {
		t.Fatalf("%s: facts name no password and no keytab", f.name)
	}
	creds, err := dissect.ParseCredentials([]byte(f.Domain + `\` + f.User + ":" + f.Password))
	if err != nil {
		t.Fatal(err)
	}
	return Options{Credentials: creds}, mechNTLM
}

func readSealedFacts(t *testing.T, jsonPath, pcap string) *sealedFacts {
	t.Helper()
	b, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	f := &sealedFacts{name: strings.TrimSuffix(filepath.Base(jsonPath), ".json"), pcap: pcap}
	if err := json.Unmarshal(b, f); err != nil {
		t.Fatalf("%s: %v", jsonPath, err)
	}
	return f
}

// sealedCaptures are the captures with sealed PDUs and a known secret: the
// project's (NTLM and Kerberos) and the shared atexec-sealed-dev.
func sealedCaptures(t *testing.T) []*sealedFacts {
	t.Helper()
	out := projectSealedCaptures(t)
	const shared = "../../shared/pcaps/atexec-sealed-dev"
	if _, err := os.Stat(shared + ".json"); err == nil {
		out = append(out, readSealedFacts(t, shared+".json", shared+".pcap"))
	} else {
		t.Logf("../shared absent: atexec-sealed-dev not checked")
	}
	return out
}

// projectSealedCaptures returns the facts of the project's captures
// (pcaps/*.json) that have sealed PDUs.
func projectSealedCaptures(t *testing.T) []*sealedFacts {
	t.Helper()
	var out []*sealedFacts
	files, _ := filepath.Glob("../pcaps/*.json")
	for _, j := range files {
		f := readSealedFacts(t, j, strings.TrimSuffix(j, ".json")+".pcap")
		if f.sealed() > 0 {
			out = append(out, f)
		}
	}
	return out
}

// replayCounters replays files and returns the lines and the counters.
func replayCounters(t *testing.T, opt Options, files ...string) ([]string, Counters) {
	t.Helper()
	var buf bytes.Buffer
	out := output.NewOutput(output.NewWriterSink(&buf, false))
	res := Replay(context.Background(), ReplayConfig{Options: opt, Detect: detect.Options{Observer: "golden"}, Output: out}, files)
	if err := out.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, err := range res.Errors {
		t.Errorf("replay: %v", err)
	}
	if n := res.Stats.Anomalies[AnomalyPanic]; n > 0 {
		t.Errorf("%d panics recovered at the worker boundary", n)
	}
	var lines []string
	if s := strings.TrimSpace(buf.String()); s != "" {
		lines = strings.Split(s, "\n")
	}
	return lines, res.Stats.Counters(OutputCounters{Events: out.Events, Alerts: out.Alerts}, out.Delivery())
}

// TestSealedPDUCounters replays every sealed capture without and with its
// secret: sealed_pdus is what tshark counted in the facts; without the
// secret none opens, with it every one opens under its mechanism and none
// fails.
func TestSealedPDUCounters(t *testing.T) {
	caps := sealedCaptures(t)
	mechs := map[string]int{}
	for _, f := range caps {
		t.Run(f.name, func(t *testing.T) {
			want := uint64(f.sealed())
			_, c := replayCounters(t, Options{}, f.pcap)
			if got := c.DCERPC; got != (DCERPCCounters{SealedPDUs: want}) {
				t.Errorf("without the secret: %+v, want %d sealed and nothing opened", got, want)
			}
			opt, mech := f.secret(t)
			mechs[mech]++
			_, c = replayCounters(t, opt, f.pcap)
			wantOpen := DCERPCCounters{SealedPDUs: want}
			if mech == mechKerberos {
				wantOpen.UnsealedPDUs.Kerberos = want
				if c.Kerberos.TicketsOpened == 0 || c.Kerberos.TicketsFailed+c.Kerberos.TicketsUnknownKey > 0 {
					t.Errorf("kerberos tickets %+v, want opened only", c.Kerberos)
				}
			} else {
				wantOpen.UnsealedPDUs.NTLM = want
			}
			if c.DCERPC != wantOpen {
				t.Errorf("with the %s secret: %+v, want %+v", mech, c.DCERPC, wantOpen)
			}
		})
	}
	if mechs[mechNTLM] == 0 || mechs[mechKerberos] == 0 {
		t.Errorf("sealed captures by mechanism %v: want NTLM and Kerberos ones", mechs)
	}
}

// callEvent is the part of an event or alert the attribution tests read.
type callEvent struct {
	Event  struct{ Kind, Action, Outcome string }
	Rule   struct{ ID string }
	User   struct{ Name, Domain string }
	DCERPC struct {
		Encrypted, Decrypted bool
		DecryptError         string `json:"decrypt_error"`
	} `json:"dcerpc"`
	Tsch struct {
		Task struct {
			Path, Command, Arguments string
			RunAs                    string `json:"run_as"`
		}
	}
}

func parseEvents(t *testing.T, lines []string) []callEvent {
	t.Helper()
	evs := make([]callEvent, len(lines))
	for i, l := range lines {
		if err := json.Unmarshal([]byte(l), &evs[i]); err != nil {
			t.Fatal(err)
		}
	}
	return evs
}

// TestInterleavedSealedContext: srvsvc calls on a second presentation
// context of one NTLM-sealed association come between the Task Scheduler
// calls (pcaps/impacket-schtask-tcp-interleaved-sealed, made by
// tsch_client.py tcp-interleaved). Their PDUs carry the same RC4 streams:
// the Task Scheduler calls after them open only if they were unsealed too.
func TestInterleavedSealedContext(t *testing.T) {
	const name = "../pcaps/impacket-schtask-tcp-interleaved-sealed"
	var facts struct {
		User, Domain, Password string
		Client                 struct {
			OpSequence           []string `json:"op_sequence"`
			TaskPath             string   `json:"task_path"`
			Command, Arguments   string
			InterleavedInterface string `json:"interleaved_interface"`
		}
	}
	b, err := os.ReadFile(name + ".json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &facts); err != nil {
		t.Fatal(err)
	}
	var tsch []string
	for _, op := range facts.Client.OpSequence {
		if strings.HasPrefix(op, "SchRpc") {
			tsch = append(tsch, op)
		}
	}
	// The capture must interleave: another interface's call between two
	// Task Scheduler calls.
	first := slices.IndexFunc(facts.Client.OpSequence, func(s string) bool { return !strings.HasPrefix(s, "SchRpc") })
	if facts.Client.InterleavedInterface == "" || first <= 0 || first >= len(facts.Client.OpSequence)-1 || len(tsch) < 3 {
		t.Fatalf("facts do not describe an interleaved sequence: %v", facts.Client.OpSequence)
	}
	creds, err := dissect.ParseCredentials([]byte(facts.Domain + `\` + facts.User + ":" + facts.Password))
	if err != nil {
		t.Fatal(err)
	}
	lines, c := replayCounters(t, Options{Credentials: creds}, name+".pcap")
	var got []string
	for _, ev := range parseEvents(t, lines) {
		if ev.Event.Kind != "event" {
			continue
		}
		got = append(got, ev.Event.Action)
		if !ev.DCERPC.Encrypted || !ev.DCERPC.Decrypted || ev.DCERPC.DecryptError != "" {
			t.Errorf("%s: encrypted=%v decrypted=%v error %q, want opened", ev.Event.Action, ev.DCERPC.Encrypted, ev.DCERPC.Decrypted, ev.DCERPC.DecryptError)
		}
		if ev.Tsch.Task.Path != facts.Client.TaskPath {
			t.Errorf("%s: task path %q, want %q", ev.Event.Action, ev.Tsch.Task.Path, facts.Client.TaskPath)
		}
		if ev.Event.Action == "SchRpcRegisterTask" && (ev.Tsch.Task.Command != facts.Client.Command || ev.Tsch.Task.Arguments != facts.Client.Arguments) {
			t.Errorf("registration %q %q, want %q %q", ev.Tsch.Task.Command, ev.Tsch.Task.Arguments, facts.Client.Command, facts.Client.Arguments)
		}
		if ev.User.Name != facts.User || ev.User.Domain != facts.Domain {
			t.Errorf("%s: user %s\\%s, want %s\\%s", ev.Event.Action, ev.User.Domain, ev.User.Name, facts.Domain, facts.User)
		}
	}
	if !slices.Equal(got, tsch) {
		t.Errorf("events %v, want %v", got, tsch)
	}
	if c.DCERPC.UnsealFailures != 0 || c.DCERPC.UnsealedPDUs.NTLM != c.DCERPC.SealedPDUs {
		t.Errorf("counters %+v: every sealed PDU, srvsvc's too, must open", c.DCERPC)
	}
}

// kerberosFacts is the part of pcaps/krb-*.json the Kerberos tests read:
// the keytab, the tickets' client and the calls the lab server decoded.
type kerberosFacts struct {
	Keytab string
	APReq  []struct{ CName, CRealm string } `json:"kerberos_ap_req"`
	Calls  []krbCall
}

// krbCall is one call the lab server decoded.
type krbCall struct {
	Op, Command, Arguments string
	UserID                 string `json:"user_id"`
}

// TestKerberosSealedCaptures replays the Kerberos lab's Task Scheduler
// captures (pcaps/krb-*-schtask-*, krb-*-atexec-*): with the keytab the
// registration shows the command, arguments and run-as the client sent, and
// every event and alert names the ticket's client principal; without it the
// calls stay encrypted and the alerts still fire.
func TestKerberosSealedCaptures(t *testing.T) {
	files, _ := filepath.Glob("../pcaps/krb-*-schtask-*.json")
	more, _ := filepath.Glob("../pcaps/krb-*-atexec-*.json")
	files = append(files, more...)
	if len(files) == 0 {
		t.Fatal("no Kerberos Task Scheduler captures in pcaps/")
	}
	for _, j := range files {
		name := strings.TrimSuffix(j, ".json")
		t.Run(filepath.Base(name), func(t *testing.T) {
			var facts kerberosFacts
			b, err := os.ReadFile(j)
			if err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(b, &facts); err != nil {
				t.Fatal(err)
			}
			i := slices.IndexFunc(facts.Calls, func(c krbCall) bool { return c.Op == "SchRpcRegisterTask" })
			if facts.Keytab == "" || len(facts.APReq) == 0 || i < 0 || facts.Calls[i].Command == "" {
				t.Fatal("facts lack the keytab, the AP-REQ or the registration the server decoded")
			}
			reg := facts.Calls[i]
			principal := facts.APReq[0]
			sf := &sealedFacts{name: filepath.Base(name), Keytab: facts.Keytab}
			opt, _ := sf.secret(t)

			lines, _ := replayCounters(t, opt, name+".pcap")
			var registered, alerted bool
			for _, ev := range parseEvents(t, lines) {
				if ev.User.Name != principal.CName || ev.User.Domain != principal.CRealm {
					t.Errorf("%s %s: user %q@%q, want the ticket's %s@%s", ev.Event.Kind, ev.Event.Action, ev.User.Name, ev.User.Domain, principal.CName, principal.CRealm)
				}
				if ev.Event.Kind == "alert" && ev.Rule.ID == "remote_task_registered" {
					alerted = true
				}
				if ev.Event.Kind != "event" || ev.Event.Action != "SchRpcRegisterTask" {
					continue
				}
				registered = true
				if !ev.DCERPC.Decrypted || ev.Tsch.Task.Command != reg.Command || ev.Tsch.Task.Arguments != reg.Arguments || ev.Tsch.Task.RunAs != reg.UserID {
					t.Errorf("with the keytab: decrypted=%v task %q %q run as %q, want %q %q %q", ev.DCERPC.Decrypted,
						ev.Tsch.Task.Command, ev.Tsch.Task.Arguments, ev.Tsch.Task.RunAs, reg.Command, reg.Arguments, reg.UserID)
				}
			}
			if !registered || !alerted {
				t.Errorf("with the keytab: registration event %v, alert %v", registered, alerted)
			}

			lines, _ = replayCounters(t, Options{}, name+".pcap")
			registered, alerted = false, false
			for _, ev := range parseEvents(t, lines) {
				if ev.Event.Kind == "alert" && ev.Rule.ID == "remote_task_registered" {
					alerted = true
				}
				if ev.Event.Kind != "event" || ev.Event.Action != "SchRpcRegisterTask" {
					continue
				}
				registered = true
				if !ev.DCERPC.Encrypted || ev.DCERPC.Decrypted || ev.Tsch.Task.Command != "" || ev.User.Name != "" {
					t.Errorf("without the keytab: encrypted=%v decrypted=%v command %q user %q", ev.DCERPC.Encrypted, ev.DCERPC.Decrypted, ev.Tsch.Task.Command, ev.User.Name)
				}
			}
			if !registered || !alerted {
				t.Errorf("without the keytab: registration event %v, alert %v", registered, alerted)
			}
		})
	}
}

// TestGoldenOpened replays every project capture with sealed PDUs with the
// secret its facts name (password or keytab) and compares the events with
// pcaps/<name>.opened.jsonl; -update rewrites them.
func TestGoldenOpened(t *testing.T) {
	caps := projectSealedCaptures(t)
	for _, f := range caps {
		t.Run(f.name, func(t *testing.T) {
			opt, _ := f.secret(t)
			got, _ := replayCounters(t, opt, f.pcap)
			golden := strings.TrimSuffix(f.pcap, ".pcap") + ".opened.jsonl"
			if *update {
				if err := os.WriteFile(golden, []byte(strings.Join(got, "\n")+"\n"), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			b, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./sensor -run TestGoldenOpened -update)", err)
			}
			want := strings.Split(strings.TrimSpace(string(b)), "\n")
			if len(got) != len(want) {
				t.Errorf("%d events, golden has %d", len(got), len(want))
			}
			for i := 0; i < min(len(got), len(want)); i++ {
				diffJSON(t, i, want[i], got[i])
			}
		})
	}
	if len(caps) == 0 {
		t.Fatal("no sealed capture with a secret in pcaps/")
	}
}

// TestAuthMetrics exposes the counters of a real Kerberos replay in the
// Prometheus families /metrics serves.
func TestAuthMetrics(t *testing.T) {
	f := readSealedFacts(t, "../pcaps/krb-impacket-schtask-tcp-aes256.json", "../pcaps/krb-impacket-schtask-tcp-aes256.pcap")
	opt, _ := f.secret(t)
	_, c := replayCounters(t, opt, f.pcap)
	var buf bytes.Buffer
	w := bufio.NewWriter(&buf)
	WritePrometheus(w, LiveMetric{Counters: c})
	w.Flush()
	s := parseProm(t, buf.String())
	want := map[string]uint64{
		`tschsensor_dcerpc_sealed_pdus_total`:                         uint64(f.sealed()),
		`tschsensor_dcerpc_unsealed_pdus_total{mechanism="kerberos"}`: uint64(f.sealed()),
		`tschsensor_dcerpc_unsealed_pdus_total{mechanism="ntlm"}`:     0,
		`tschsensor_dcerpc_unseal_failures_total`:                     0,
		`tschsensor_kerberos_tickets_total{result="opened"}`:          c.Kerberos.TicketsOpened,
		`tschsensor_kerberos_tickets_total{result="unknown_key"}`:     0,
		`tschsensor_smb3_keyed_sessions_total{mechanism="kerberos"}`:  c.SMB3.KeyedSessions.Kerberos,
		`tschsensor_dcerpc_signature_failures_total`:                  0,
		`tschsensor_dcerpc_signatures_checked_total`:                  c.Signatures.Checked,
		`tschsensor_smb3_keyed_sessions_total{mechanism="ntlm"}`:      0,
		`tschsensor_kerberos_tickets_total{result="failed"}`:          0,
	}
	if c.Kerberos.TicketsOpened != 1 {
		t.Errorf("tickets opened %d, want 1", c.Kerberos.TicketsOpened)
	}
	for k, v := range want {
		if got, ok := s[k]; !ok || got != float64(v) {
			t.Errorf("%s = %v (present %v), want %d", k, got, ok, v)
		}
	}
}

// TestSignedPDUs replays the NTLM capture at packet integrity
// (pcaps/impacket-schtask-tcp-signed): with the password every signed
// request and response is checked and verifies; one byte changed in a
// request's stub makes exactly that signature fail, counted and named, and
// the PDUs after it still verify (the sequence and cipher state advanced).
func TestSignedPDUs(t *testing.T) {
	const name = "../pcaps/impacket-schtask-tcp-signed"
	var facts struct {
		User, Domain, Password string
		PDUs                   []struct {
			PDU       string `json:"pdu"`
			Frame     int
			AuthLevel *int `json:"auth_level"`
		} `json:"dcerpc_pdus"`
	}
	b, err := os.ReadFile(name + ".json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &facts); err != nil {
		t.Fatal(err)
	}
	signed, firstReq := 0, 0
	for _, p := range facts.PDUs {
		if p.AuthLevel != nil && *p.AuthLevel == dissect.AuthLevelIntegrity && (p.PDU == "request" || p.PDU == "response") {
			signed++
			if p.PDU == "request" && firstReq == 0 {
				firstReq = p.Frame
			}
		}
	}
	if signed == 0 {
		t.Fatal("facts list no signed request or response")
	}
	creds, err := dissect.ParseCredentials([]byte(facts.Domain + `\` + facts.User + ":" + facts.Password))
	if err != nil {
		t.Fatal(err)
	}
	_, c := replayCounters(t, Options{Credentials: creds}, name+".pcap")
	if c.Signatures != (SignatureCounters{Checked: uint64(signed)}) || c.DCERPC.SealedPDUs != 0 {
		t.Errorf("signatures %+v sealed %d, want %d checked, none failed, none sealed", c.Signatures, c.DCERPC.SealedPDUs, signed)
	}
	_, c = replayCounters(t, Options{}, name+".pcap")
	if c.Signatures != (SignatureCounters{}) {
		t.Errorf("without the password: signatures %+v, want none checked", c.Signatures)
	}

	// Change the byte before the request's sec_trailer padding and verifier.
	w := NewWorker(Options{Credentials: creds}, discardCalls{}, nil)
	eachPacket(t, name+".pcap", func(frame int, data []byte, ci gopacket.CaptureInfo, link layers.LinkType) {
		if frame == firstReq {
			data = append([]byte(nil), data...)
			data[len(data)-16-8-1] ^= 0x01
		}
		w.Packet(data, ci, link)
	})
	w.Flush()
	st := w.Stats()
	if st.Auth.SignedPDUs != uint64(signed) || st.Auth.SignatureFailures != 1 || st.Anomalies["dcerpc_bad_signature"] != 1 {
		t.Errorf("one request changed: checked %d, failed %d, dcerpc_bad_signature %d; want %d, 1, 1",
			st.Auth.SignedPDUs, st.Auth.SignatureFailures, st.Anomalies["dcerpc_bad_signature"], signed)
	}
}

// discardCalls is a Recorder that keeps nothing.
type discardCalls struct{}

func (discardCalls) Call(*detect.Call)   {}
func (discardCalls) File(*detect.FileOp) {}

// TestSealedEarlyResponses re-drives the interleaved capture's sealed
// association with every response on the wire before its request, as when a
// gap holds the client's bytes back in the reassembler: the responses are
// opened as they arrive (the server's RC4 stream is in wire order) and
// joined with their requests later. Every call still decodes.
func TestSealedEarlyResponses(t *testing.T) {
	const name = "../pcaps/impacket-schtask-tcp-interleaved-sealed"
	f := readSealedFacts(t, name+".json", name+".pcap")
	opt, _ := f.secret(t)
	msgs := wireMessages(t, name+".pcap", 49667, func(b []byte) int {
		var h dissect.DCERPCHeader
		if ok, _ := dissect.PeekDCERPC(b, &h); !ok {
			return 0
		}
		return int(h.FragLen)
	})
	// Swap each request with the response that follows it.
	swapped := 0
	for i := 0; i+1 < len(msgs); i++ {
		if msgs[i].fromClient && msgs[i].b[2] == dissect.PTypeRequest && !msgs[i+1].fromClient && msgs[i+1].b[2] == dissect.PTypeResponse {
			msgs[i], msgs[i+1] = msgs[i+1], msgs[i]
			swapped++
			i++
		}
	}
	if swapped < 4 {
		t.Fatalf("only %d request/response pairs to swap", swapped)
	}
	p := writeConn(t, msgs, 40003, 49667, "early.pcap")
	lines, cnt := replayCounters(t, opt, p)
	want := uint64(f.sealed())
	if cnt.DCERPC != (DCERPCCounters{SealedPDUs: want, UnsealedPDUs: ByMechanism{NTLM: want}}) {
		t.Errorf("counters %+v, want all %d sealed PDUs opened", cnt.DCERPC, want)
	}
	n := 0
	for _, ev := range parseEvents(t, lines) {
		if ev.Event.Kind != "event" {
			continue
		}
		n++
		if !ev.DCERPC.Decrypted || ev.Tsch.Task.Path == "" || ev.Event.Outcome != "success" {
			t.Errorf("%s: decrypted=%v path %q outcome %q error %q", ev.Event.Action, ev.DCERPC.Decrypted, ev.Tsch.Task.Path,
				ev.Event.Outcome, ev.DCERPC.DecryptError)
		}
	}
	if n != 4 {
		t.Errorf("%d events, want the 4 Task Scheduler calls", n)
	}
}

// tsharkSealedPDUs counts the sealed (auth level 6) request, response and
// fault PDUs tshark dissects in a capture: the oracle for captures without
// a facts file. It skips the test when tshark is missing.
func tsharkSealedPDUs(t *testing.T, pcap string, extra ...string) int {
	t.Helper()
	bin, err := exec.LookPath("tshark")
	if err != nil {
		t.Skip("tshark not installed: no independent count of sealed PDUs")
	}
	args := append([]string{"-n", "-r", pcap}, extra...)
	args = append(args, "-Y", "dcerpc.auth_level == 6 && (dcerpc.pkt_type == 0 || dcerpc.pkt_type == 2 || dcerpc.pkt_type == 3)",
		"-T", "fields", "-e", "dcerpc.pkt_type")
	out, err := exec.Command(bin, args...).Output()
	if err != nil {
		t.Fatalf("tshark: %v", err)
	}
	n := 0
	for _, line := range strings.Fields(string(out)) {
		n += len(strings.Split(line, ",")) // one field value per PDU of the frame
	}
	return n
}

// TestSealedPDUCountersWindows: Scapy's DCE/RPC client against a Windows
// server, svcctl over ncacn_ip_tcp sealed with NTLM in SPNEGO, one response
// of 33592 bytes in several fragments (../shared B_scapy__dcerpc_privacy_ntlm;
// the account's password is published in Scapy's test/scapy/layers/dcerpc.uts).
// With it every sealed PDU tshark counts opens, none fails.
func TestSealedPDUCountersWindows(t *testing.T) {
	const pcap = "../../shared/pcaps/B_scapy__dcerpc_privacy_ntlm.pcapng"
	if _, err := os.Stat(pcap); err != nil {
		t.Skipf("../shared absent: %v", err)
	}
	want := uint64(tsharkSealedPDUs(t, pcap))
	if want == 0 {
		t.Fatal("tshark counts no sealed PDU")
	}
	creds, err := dissect.ParseCredentials([]byte(`DOMAIN\Administrator:Password123!`))
	if err != nil {
		t.Fatal(err)
	}
	_, c := replayCounters(t, Options{Credentials: creds}, pcap)
	if c.DCERPC != (DCERPCCounters{SealedPDUs: want, UnsealedPDUs: ByMechanism{NTLM: want}}) {
		t.Errorf("with the password: %+v, want all %d sealed PDUs opened", c.DCERPC, want)
	}
	_, c = replayCounters(t, Options{}, pcap)
	if c.DCERPC != (DCERPCCounters{SealedPDUs: want}) {
		t.Errorf("without it: %+v, want %d sealed, none opened", c.DCERPC, want)
	}
}
