package sensor

import (
	"encoding/json"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// faultCapture is a lab capture with a call the server faulted in a sealed
// fault PDU (tsch_lab.py --seal-faults, tsch_client.py tcp-fault and
// tcp-krb-fault): SchRpcRegisterTask, a call to an opnum
// ITaskSchedulerService lacks (nca_s_op_rng_error), then SchRpcRun,
// SchRpcGetLastRunInfo and SchRpcDelete.
type faultCapture struct {
	name string
	mech string
}

var faultCaptures = []faultCapture{
	{"impacket-schtask-tcp-fault-sealed", mechNTLM},
	{"krb-impacket-schtask-tcp-fault-aes256", mechKerberos},
}

type faultFacts struct {
	User   string
	Client struct {
		FaultOpnum  uint16   `json:"fault_opnum"`
		FaultStatus string   `json:"fault_status"`
		FaultAuth   int      `json:"fault_auth_len"`
		OpSequence  []string `json:"op_sequence"`
		TaskPath    string   `json:"task_path"`
	}
}

// faultEvent is what TestSealedFault reads of an event.
type faultEvent struct {
	callEvent
	RPC struct {
		Opnum     uint16
		Fault     string
		FaultCode uint32 `json:"fault_code"`
	} `json:"dcerpc"`
}

// TestSealedFault replays the sealed-fault captures with their secret: the
// fault PDU goes through the unsealer like any response (NTLM's RC4 stream
// from the server moves on over its verifier), so the calls after it open;
// the fault's status is reported on its call; every sealed PDU, the fault
// and its empty request included, is counted and opened.
func TestSealedFault(t *testing.T) {
	for _, fc := range faultCaptures {
		t.Run(fc.name, func(t *testing.T) {
			base := "../pcaps/" + fc.name
			sf := readSealedFacts(t, base+".json", base+".pcap")
			var facts faultFacts
			b, err := os.ReadFile(base + ".json")
			if err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(b, &facts); err != nil {
				t.Fatal(err)
			}
			status, err := strconv.ParseUint(strings.TrimPrefix(facts.Client.FaultStatus, "0x"), 16, 32)
			if err != nil || facts.Client.FaultOpnum == 0 || facts.Client.FaultAuth == 0 {
				t.Fatalf("facts name no sealed fault (opnum %d, status %q, auth_len %d)", facts.Client.FaultOpnum, facts.Client.FaultStatus, facts.Client.FaultAuth)
			}
			opt, mech := sf.secret(t)
			if mech != fc.mech {
				t.Fatalf("secret opens with %s, want %s", mech, fc.mech)
			}
			lines, c := replayCounters(t, opt, sf.pcap)
			var evs []faultEvent
			for _, l := range lines {
				var ev faultEvent
				if err := json.Unmarshal([]byte(l), &ev); err != nil {
					t.Fatal(err)
				}
				if err := json.Unmarshal([]byte(l), &ev.callEvent); err != nil {
					t.Fatal(err)
				}
				if ev.Event.Kind == "event" {
					evs = append(evs, ev)
				}
			}
			var ops []string
			faulted := -1
			for i, ev := range evs {
				if ev.RPC.Opnum == facts.Client.FaultOpnum {
					faulted = i
					ops = append(ops, "unsupported")
					if ev.RPC.Fault != "nca_s_op_rng_error" || uint64(ev.RPC.FaultCode) != status || ev.Event.Outcome != "failure" {
						t.Errorf("faulted call: fault %q code 0x%08x outcome %q, want nca_s_op_rng_error %s failure",
							ev.RPC.Fault, ev.RPC.FaultCode, ev.Event.Outcome, facts.Client.FaultStatus)
					}
				} else {
					ops = append(ops, ev.Event.Action)
				}
				if !ev.DCERPC.Encrypted || !ev.DCERPC.Decrypted || ev.DCERPC.DecryptError != "" {
					t.Errorf("event %d (%s): encrypted=%v decrypted=%v error %q, want opened", i, ops[i], ev.DCERPC.Encrypted, ev.DCERPC.Decrypted, ev.DCERPC.DecryptError)
				}
				if faulted >= 0 && i > faulted && ev.Tsch.Task.Path != facts.Client.TaskPath {
					t.Errorf("%s after the fault: task path %q, want %q", ev.Event.Action, ev.Tsch.Task.Path, facts.Client.TaskPath)
				}
				if ev.User.Name != facts.User {
					t.Errorf("%s: user %q, want %q", ops[i], ev.User.Name, facts.User)
				}
			}
			if strings.Join(ops, ",") != strings.Join(facts.Client.OpSequence, ",") {
				t.Errorf("calls %v, the client made %v", ops, facts.Client.OpSequence)
			}
			n := uint64(sf.sealed())
			opened := c.DCERPC.UnsealedPDUs.NTLM
			if mech == mechKerberos {
				opened = c.DCERPC.UnsealedPDUs.Kerberos
			}
			if c.DCERPC.SealedPDUs != n || opened != n || c.DCERPC.UnsealFailures != 0 {
				t.Errorf("dcerpc %+v: want all %d sealed PDUs (the fault too) opened under %s", c.DCERPC, n, mech)
			}
		})
	}
}

// TestSealedFaultSkipped re-drives the NTLM sealed-fault capture's RPC
// connection without its fault PDU: the server's RC4 stream went over the
// fault's verifier, so every server PDU after the gap fails to open. This
// is what TestSealedFault's calls after the fault depend on.
func TestSealedFaultSkipped(t *testing.T) {
	const base = "../pcaps/impacket-schtask-tcp-fault-sealed"
	sf := readSealedFacts(t, base+".json", base+".pcap")
	msgs := rpcWireMessages(t, base+".pcap", 49667)
	var kept []wireMsg
	faults, after := 0, 0
	for _, m := range msgs {
		if len(m.b) > 2 && m.b[2] == 3 {
			faults++
			continue
		}
		if faults > 0 && !m.fromClient && m.b[2] == 2 {
			after++
		}
		kept = append(kept, m)
	}
	if faults != 1 || after == 0 {
		t.Fatalf("%d faults, %d responses after them: not the capture this test is about", faults, after)
	}
	c := &ocCapture{t: t, now: time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)}
	f := c.open(40001, 49667)
	for _, m := range kept {
		f.send(m.fromClient, m.b)
	}
	f.close()
	p := t.TempDir() + "/no-fault.pcap"
	c.write(p)
	opt, _ := sf.secret(t)
	_, cnt := replayCounters(t, opt, p)
	if cnt.DCERPC.UnsealFailures != uint64(after) {
		t.Errorf("dcerpc %+v: want the %d server PDUs after the missing fault to fail", cnt.DCERPC, after)
	}
}
