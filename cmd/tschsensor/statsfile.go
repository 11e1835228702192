package main

import (
	"github.com/tschsensor/tschsensor/detect"
	"github.com/tschsensor/tschsensor/sensor"
	"github.com/tschsensor/tschsensor/sensor/output"
)

// statsFileUsage is the --stats-file flag's text, shared by replay and run.
const statsFileUsage = "write the final counters as one JSON object to this `file` (sealed/opened DCE-RPC PDUs, Kerberos tickets, SMB3 keys, anomalies...; docs/events.md, Counters)"

// writeStatsFile writes a run's final counters (replay's, or live capture's
// at shutdown) as the Counters object: read after the outputs closed, so
// that the delivery section counts what closing lost.
func writeStatsFile(path string, s *sensor.Stats, out *output.Output, dopts detect.Options) error {
	oc := sensor.OutputCounters{Events: out.Events, Alerts: out.Alerts}
	if dopts.Rules != nil {
		if rs := dopts.Rules.Load(); rs != nil {
			oc.Suppressed = rs.Suppressions()
		}
	}
	return sensor.WriteCountersFile(path, s.Counters(oc, out.Delivery()))
}
