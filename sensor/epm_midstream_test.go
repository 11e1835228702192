package sensor

import (
	"strings"
	"testing"

	"github.com/tschsensor/tschsensor/detect"
)

// TestEPMNamesSealedMidstream: schtasks /S over ncacn_ip_tcp with Kerberos
// privacy (A_otrf__schtask_create_2020-12-1907003032.pcapng), with the TCP
// handshake, bind and alter_context on port 49671 (frames 1368-1375) left
// out. The endpoint mapper's answer (frames 1365/1367) names the port, so
// the sealed SchRpcRegisterTask is still reported and alerted.
func TestEPMNamesSealedMidstream(t *testing.T) {
	pkts := plLoad(t, plShared(t, "A_otrf__schtask_create_2020-12-1907003032.pcapng"))
	var out []plPacket
	for i, p := range pkts {
		if frame := i + 1; frame >= 1368 && frame <= 1375 {
			continue
		}
		out = append(out, p)
	}
	for _, workers := range []int{1, 3} {
		var lines []string
		emit := func(ev *detect.Event) {
			if ev.Event.Kind == "alert" {
				lines = append(lines, "alert "+ev.Rule.ID)
			} else if ev.DCERPC != nil {
				lines = append(lines, ev.DCERPC.Interface.Name+" "+ev.DCERPC.Operation)
			}
		}
		det := detect.New(detect.Options{}, emit)
		res := NewResolver(directRecorder{det})
		// Flows are sharded as AF_PACKET fanout would: each worker sees only
		// its connections, the EPM answer and the task connection apart.
		epm := NewEPMTable(0, 0)
		ws := make([]*Worker, workers)
		for i := range ws {
			ws[i] = NewWorker(Options{}, res, epm)
		}
		for _, p := range out {
			var f frame
			if decodeFrame(p.data, p.link, &f) != decTCP || len(f.tcp) < 4 {
				continue
			}
			sp, dp := int(f.tcp[0])<<8|int(f.tcp[1]), int(f.tcp[2])<<8|int(f.tcp[3])
			ws[(sp+dp)%workers].Packet(p.data, p.ci, p.link)
		}
		for _, w := range ws {
			w.Flush()
		}
		res.Flush()
		det.Flush()
		got := strings.Join(lines, "\n")
		for _, want := range []string{"ITaskSchedulerService SchRpcRegisterTask", "alert remote_task_registered"} {
			if !strings.Contains(got, want) {
				t.Errorf("workers=%d: no %q in\n%s", workers, want, got)
			}
		}
		if res.Dropped != 0 {
			t.Errorf("workers=%d: %d calls left unnamed", workers, res.Dropped)
		}
	}
}
