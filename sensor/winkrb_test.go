package sensor

import (
	"path/filepath"
	"testing"

	"github.com/tschsensor/tschsensor/dissect"
)

// TestWindowsKerberosCountsWithoutKey replays a real Windows schtasks /S
// capture (OTRF, ../shared: Kerberos in SPNEGO at packet privacy, the
// client's AP-REP third leg and mechListMIC in alter_context, header
// signing offered) for which no key is published. Without a key, and with
// a keytab of other principals, every sealed request and response is
// counted and none opens or fails, the ticket is counted as without key
// (or failed with the wrong keys), and the registration alert still fires.
// The expected counts come from the capture's bytes: the PDUs at
// PKT_PRIVACY and the AP-REQs in the client's binds.
func TestWindowsKerberosCountsWithoutKey(t *testing.T) {
	pcap := filepath.Join("..", "..", "shared", "pcaps", "A_otrf__schtask_create_2020-12-1907003032.pcapng")
	if !fileExists(pcap) {
		t.Skip("../shared/pcaps/A_otrf__schtask_create_2020-12-1907003032.pcapng absent")
	}
	sealed, apReqs, apReps := 0, 0, 0
	for _, m := range rpcWireMessages(t, pcap, 49671) {
		var h dissect.DCERPCHeader
		var tr dissect.AuthTrailer
		if ok, _ := dissect.PeekDCERPC(m.b, &h); !ok {
			t.Fatal("not a DCE-RPC PDU on the Task Scheduler port")
		}
		if ok, err := dissect.ParseAuthTrailer(m.b, &h, &tr); !ok || err != nil {
			continue
		}
		switch h.PType {
		case dissect.PTypeRequest, dissect.PTypeResponse, dissect.PTypeFault:
			if tr.Level == dissect.AuthLevelPrivacy {
				sealed++
			}
		default:
			switch typ, _ := dissect.FindKerberosMessage(tr.Value); {
			case typ == dissect.KerberosAPReq && m.fromClient:
				apReqs++
			case typ == dissect.KerberosAPRep && m.fromClient:
				apReps++ // DCE style's third leg
			}
		}
	}
	if sealed == 0 || apReqs != 1 || apReps != 1 {
		t.Fatalf("capture holds %d sealed PDUs, %d AP-REQs, %d client AP-REPs: not the shape this test is about", sealed, apReqs, apReps)
	}
	other, _ := (&sealedFacts{Keytab: "pcaps/keys/lab.keytab"}).secret(t)
	for _, tc := range []struct {
		name            string
		opt             Options
		unknown, failed uint64
	}{
		{"no keytab", Options{}, 1, 0},
		{"keytab of other principals", other, 0, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lines, c := replayCounters(t, tc.opt, pcap)
			if c.DCERPC.SealedPDUs != uint64(sealed) || c.DCERPC.UnsealedPDUs.Kerberos != 0 || c.DCERPC.UnsealFailures != 0 {
				t.Errorf("dcerpc %+v: want %d sealed, none opened, none failed", c.DCERPC, sealed)
			}
			if k := c.Kerberos; k.TicketsOpened != 0 || k.TicketsUnknownKey != tc.unknown || k.TicketsFailed != tc.failed {
				t.Errorf("kerberos %+v: want %d without key, %d failed", k, tc.unknown, tc.failed)
			}
			registered := false
			for _, ev := range parseEvents(t, lines) {
				if !ev.DCERPC.Encrypted || ev.DCERPC.Decrypted {
					t.Errorf("%s %s: encrypted=%v decrypted=%v", ev.Event.Kind, ev.Event.Action, ev.DCERPC.Encrypted, ev.DCERPC.Decrypted)
				}
				if ev.Event.Kind == "alert" && ev.Event.Action == "SchRpcRegisterTask" {
					registered = true
				}
			}
			if !registered {
				t.Error("no alert for the sealed SchRpcRegisterTask")
			}
		})
	}
}
