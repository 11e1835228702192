// Package pkg counts anomalies in every way TestAnomalyScan expects the
// documentation test to find (it is not built: it lives under testdata).
package pkg

import "fmt"

const AnomalyConst = "via_constant"

type stats struct{ Anomalies map[string]uint64 }

func (s *stats) anomaly(name string) { s.Anomalies[name]++ }

func establish(s *stats, wrongAnomaly string) { s.anomaly(wrongAnomaly) }

func failureAnomaly(k bool) string {
	if k {
		return "via_return_one"
	}
	return "via_return_two"
}

func count(s *stats) {
	s.anomaly("via_call")
	s.Anomalies["via_index"]++
	establish(s, "via_parameter")
	s.anomaly(failureAnomaly(true))
	_ = "not_an_anomaly_here"
	fmt.Sprint("plain")
}
