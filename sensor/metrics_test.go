package sensor

import (
	"bufio"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/tschsensor/tschsensor/detect"
	"github.com/tschsensor/tschsensor/sensor/output"
	"github.com/tschsensor/tschsensor/sensor/source"
)

type fakeMetrics struct {
	m   LiveMetric
	ok  bool
	why string
}

func (f *fakeMetrics) Metrics() LiveMetric     { return f.m }
func (f *fakeMetrics) Healthy() (bool, string) { return f.ok, f.why }

var (
	promHelp   = regexp.MustCompile(`^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) \S.*$`)
	promType   = regexp.MustCompile(`^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge)$`)
	promSample = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"(?:,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*")*)?\})? (\S+)$`)
)

// parseProm checks the text exposition format (HELP and TYPE once per
// family, before its samples; counters named _total; values numeric; no
// duplicate series) and returns the samples by series.
func parseProm(t *testing.T, text string) map[string]float64 {
	t.Helper()
	types := map[string]string{}
	samples := map[string]float64{}
	for i, line := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		switch {
		case strings.HasPrefix(line, "# HELP "):
			if !promHelp.MatchString(line) {
				t.Errorf("line %d: bad HELP %q", i+1, line)
			}
		case strings.HasPrefix(line, "# TYPE "):
			m := promType.FindStringSubmatch(line)
			if m == nil {
				t.Errorf("line %d: bad TYPE %q", i+1, line)
				continue
			}
			if _, dup := types[m[1]]; dup {
				t.Errorf("line %d: second TYPE for %s", i+1, m[1])
			}
			if m[2] == "counter" && !strings.HasSuffix(m[1], "_total") {
				t.Errorf("line %d: counter %s not named _total", i+1, m[1])
			}
			types[m[1]] = m[2]
		default:
			m := promSample.FindStringSubmatch(line)
			if m == nil {
				t.Errorf("line %d: bad sample %q", i+1, line)
				continue
			}
			if types[m[1]] == "" {
				t.Errorf("line %d: sample of %s before its TYPE", i+1, m[1])
			}
			v, err := strconv.ParseFloat(m[4], 64)
			if err != nil {
				t.Errorf("line %d: value %q: %v", i+1, m[4], err)
			}
			series := m[1] + m[2]
			if _, dup := samples[series]; dup {
				t.Errorf("line %d: duplicate series %s", i+1, series)
			}
			samples[series] = v
		}
	}
	return samples
}

func TestMetricsHandler(t *testing.T) {
	src := &fakeMetrics{ok: true, why: "capturing", m: LiveMetric{
		Healthy: true, UptimeSeconds: 12.5, Events: 7, Alerts: 2, DroppedEvents: 3, DroppedRecords: 1, QueueLen: 4,
		Counters: Counters{Delivery: output.Delivery{Published: 20, Acked: 12, Spooled: 8, Resent: 6, SpoolRecords: 2, NATSConnected: new(bool),
			Dropped: output.Drops{Queue: 1, Spool: 2}, DroppedTotal: 3}},
		Workers: []WorkerMetric{
			{Worker: 0, Running: true, Packets: 100, Bytes: 1500, Anomalies: map[string]uint64{"malformed_tcp": 5, "gap_\"odd\"\n": 1},
				Sockets: []SocketMetric{{Iface: "eth0", KernelStats: source.KernelStats{Packets: 110, Drops: 10, Freezes: 1}}, {Iface: "eth1", KernelStats: source.KernelStats{Packets: 3}}}},
			{Worker: 1, Running: false, Packets: 9,
				Sockets: []SocketMetric{{Iface: "eth0", KernelStats: source.KernelStats{Packets: 9}}, {Iface: "eth1"}}},
		},
	}}
	srv := httptest.NewServer(NewMetricsHandler(src))
	defer srv.Close()
	get := func(path string) (int, string, string) {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("Content-Type"), string(b)
	}
	code, ctype, body := get("/metrics")
	if code != 200 || !strings.HasPrefix(ctype, "text/plain; version=0.0.4") {
		t.Fatalf("/metrics: %d %q", code, ctype)
	}
	s := parseProm(t, body)
	want := map[string]float64{
		`tschsensor_up`:                    1,
		`tschsensor_worker_up{worker="1"}`: 0,
		`tschsensor_kernel_packets_total{worker="0",interface="eth0"}`: 110,
		`tschsensor_kernel_drops_total{worker="0",interface="eth0"}`:   10,
		`tschsensor_kernel_freezes_total{worker="0",interface="eth0"}`: 1,
		`tschsensor_kernel_packets_total{worker="1",interface="eth1"}`: 0,
		`tschsensor_packets_total{worker="1"}`:                         9,
		`tschsensor_bytes_total{worker="0"}`:                           1500,
		`tschsensor_anomalies_total{worker="0",name="malformed_tcp"}`:  5,
		`tschsensor_anomalies_total{worker="0",name="gap_\"odd\"\n"}`:  1,
		`tschsensor_events_total`:                                      7,
		`tschsensor_alerts_total`:                                      2,
		`tschsensor_dropped_events_total`:                              3,
		`tschsensor_dropped_records_total`:                             1,
		`tschsensor_queue_length`:                                      4,
		`tschsensor_uptime_seconds`:                                    12.5,
		`tschsensor_dropped_total{reason="queue"}`:                     1,
		`tschsensor_dropped_total{reason="spool"}`:                     2,
		`tschsensor_dropped_total{reason="sink"}`:                      0,
		`tschsensor_nats_connected`:                                    0,
		`tschsensor_nats_published_total`:                              20,
		`tschsensor_nats_acked_total`:                                  12,
		`tschsensor_nats_resent_total`:                                 6,
		`tschsensor_nats_spool_records`:                                2,
	}
	for k, v := range want {
		if got, ok := s[k]; !ok || got != v {
			t.Errorf("%s = %v (present %v), want %v", k, got, ok, v)
		}
	}
	if code, _, body := get("/healthz"); code != 200 || body != "capturing\n" {
		t.Errorf("/healthz healthy: %d %q", code, body)
	}
	src.ok, src.why = false, "worker 1: eth0: interface removed"
	if code, _, body := get("/healthz"); code != 503 || !strings.Contains(body, "interface removed") {
		t.Errorf("/healthz after a worker stopped: %d %q", code, body)
	}
	if code, _, _ := get("/other"); code != 404 {
		t.Errorf("/other: %d", code)
	}
}

// TestWritePrometheusEmpty: no workers still gives a valid exposition.
func TestWritePrometheusEmpty(t *testing.T) {
	var b strings.Builder
	w := bufio.NewWriter(&b)
	WritePrometheus(w, LiveMetric{})
	w.Flush()
	s := parseProm(t, b.String())
	if v, ok := s["tschsensor_up"]; !ok || v != 0 {
		t.Errorf("tschsensor_up = %v, %v", v, ok)
	}
	if _, ok := s["tschsensor_nats_connected"]; ok {
		t.Error("tschsensor_nats_connected without NATS")
	}
}

// TestWritePrometheusSuppressed: each suppress entry of the rules file is
// one series, labelled with its position and reason; none without a file.
func TestWritePrometheusSuppressed(t *testing.T) {
	var b strings.Builder
	w := bufio.NewWriter(&b)
	var m LiveMetric
	m.Output.Suppressed = []detect.SuppressionCount{{Entry: 1, Line: 2, Reason: `jump "hosts"`, Count: 3}, {Entry: 2, Line: 5, Count: 0}}
	WritePrometheus(w, m)
	w.Flush()
	s := parseProm(t, b.String())
	if s[`tschsensor_alerts_suppressed_total{entry="1",reason="jump \"hosts\""}`] != 3 {
		t.Errorf("series:\n%s", b.String())
	}
	if v, ok := s[`tschsensor_alerts_suppressed_total{entry="2",reason=""}`]; !ok || v != 0 {
		t.Errorf("entry 2: %v %v", v, ok)
	}
	b.Reset()
	WritePrometheus(w, LiveMetric{})
	w.Flush()
	if strings.Contains(b.String(), "suppressed") {
		t.Error("suppression series without a rules file")
	}
}
