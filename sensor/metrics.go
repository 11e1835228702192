package sensor

import (
	"bufio"
	"net/http"
	"strconv"
	"strings"

	"github.com/tschsensor/tschsensor/sensor/source"
)

// MetricsSource is what the metrics endpoint reads: Live implements it.
type MetricsSource interface {
	Metrics() LiveMetric
	Healthy() (bool, string)
}

// NewMetricsHandler serves /metrics in the Prometheus text exposition
// format (version 0.0.4) and /healthz: 200 while every worker captures,
// 503 otherwise. The format is written here rather than with the client
// library: a few counters do not justify a dependency.
func NewMetricsHandler(src MetricsSource) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		bw := bufio.NewWriter(w)
		WritePrometheus(bw, src.Metrics())
		bw.Flush()
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		ok, why := src.Healthy()
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		w.Write([]byte(why + "\n"))
	})
	return mux
}

// promWriter writes metric families: HELP and TYPE once, then samples.
type promWriter struct {
	w *bufio.Writer
}

func (p promWriter) family(name, typ, help string) {
	p.w.WriteString("# HELP " + name + " " + help + "\n")
	p.w.WriteString("# TYPE " + name + " " + typ + "\n")
}

// sample writes one line; labels come as name, value pairs.
func (p promWriter) sample(name string, v float64, labels ...string) {
	p.w.WriteString(name)
	if len(labels) > 0 {
		p.w.WriteByte('{')
		for i := 0; i+1 < len(labels); i += 2 {
			if i > 0 {
				p.w.WriteByte(',')
			}
			p.w.WriteString(labels[i] + `="` + escapeLabel(labels[i+1]) + `"`)
		}
		p.w.WriteByte('}')
	}
	p.w.WriteByte(' ')
	p.w.WriteString(strconv.FormatFloat(v, 'g', -1, 64))
	p.w.WriteByte('\n')
}

var labelEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)

func escapeLabel(s string) string { return labelEscaper.Replace(s) }

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// WritePrometheus writes m in the Prometheus text format.
func WritePrometheus(w *bufio.Writer, m LiveMetric) {
	p := promWriter{w}
	p.family("tschsensor_up", "gauge", "1 while every capture worker runs.")
	p.sample("tschsensor_up", b2f(m.Healthy))
	p.family("tschsensor_uptime_seconds", "gauge", "Seconds since capture started.")
	p.sample("tschsensor_uptime_seconds", m.UptimeSeconds)

	p.family("tschsensor_worker_up", "gauge", "1 while the capture worker runs.")
	for _, wm := range m.Workers {
		p.sample("tschsensor_worker_up", b2f(wm.Running), "worker", strconv.Itoa(wm.Worker))
	}
	kernel := []struct {
		name, help string
		get        func(source.KernelStats) uint64
	}{
		{"tschsensor_kernel_packets_total", "Packets the kernel passed to a capture socket, dropped ones included.", func(k source.KernelStats) uint64 { return k.Packets }},
		{"tschsensor_kernel_drops_total", "Packets the kernel dropped because the capture ring was full.", func(k source.KernelStats) uint64 { return k.Drops }},
		{"tschsensor_kernel_freezes_total", "Times a capture ring filled up.", func(k source.KernelStats) uint64 { return k.Freezes }},
	}
	for _, k := range kernel {
		p.family(k.name, "counter", k.help)
		for _, wm := range m.Workers {
			for _, s := range wm.Sockets {
				p.sample(k.name, float64(k.get(s.KernelStats)), "worker", strconv.Itoa(wm.Worker), "interface", s.Iface)
			}
		}
	}
	workers := []struct {
		name, help string
		get        func(*WorkerMetric) uint64
	}{
		{"tschsensor_packets_total", "Packets a worker decoded.", func(w *WorkerMetric) uint64 { return w.Packets }},
		{"tschsensor_bytes_total", "Bytes of the packets a worker decoded (wire length).", func(w *WorkerMetric) uint64 { return w.Bytes }},
		{"tschsensor_tcp_packets_total", "TCP packets a worker decoded.", func(w *WorkerMetric) uint64 { return w.TCPPackets }},
		{"tschsensor_connections_total", "TCP connections a worker followed.", func(w *WorkerMetric) uint64 { return w.Connections }},
		{"tschsensor_smb_connections_total", "Connections recognised as SMB.", func(w *WorkerMetric) uint64 { return w.SMBConnections }},
		{"tschsensor_rpc_connections_total", "Connections recognised as DCE-RPC over TCP.", func(w *WorkerMetric) uint64 { return w.RPCConnections }},
		{"tschsensor_tsch_calls_total", "MS-TSCH calls decoded.", func(w *WorkerMetric) uint64 { return w.TschCalls }},
		{"tschsensor_tsch_calls_summarised_total", "MS-TSCH calls without an event of their own: ended unanswered on a flooded channel, counted in a summary event.", func(w *WorkerMetric) uint64 { return w.TschSummarised }},
		{"tschsensor_file_ops_total", "SMB file operations recorded.", func(w *WorkerMetric) uint64 { return w.FileOps }},
		{"tschsensor_tcp_gaps_total", "Holes in reassembled TCP streams.", func(w *WorkerMetric) uint64 { return w.Gaps }},
	}
	for _, f := range workers {
		p.family(f.name, "counter", f.help)
		for i := range m.Workers {
			p.sample(f.name, float64(f.get(&m.Workers[i])), "worker", strconv.Itoa(m.Workers[i].Worker))
		}
	}
	writeAuthMetrics(p, &m.Counters)
	labelled := func(name, typ, help, label string, get func(*WorkerMetric) map[string]uint64) {
		p.family(name, typ, help)
		for i := range m.Workers {
			vals := get(&m.Workers[i])
			for _, k := range sortedKeys(vals) {
				p.sample(name, float64(vals[k]), "worker", strconv.Itoa(m.Workers[i].Worker), label, k)
			}
		}
	}
	labelled("tschsensor_anomalies_total", "counter", "Anomalies by name (malformed or unsupported traffic, limits reached).", "name",
		func(w *WorkerMetric) map[string]uint64 { return w.Anomalies })
	labelled("tschsensor_flows_total", "counter", "TCP flows by the verdict of the flow table (unknown: not decided).", "verdict",
		func(w *WorkerMetric) map[string]uint64 { return w.Flows })
	labelled("tschsensor_flow_packets_total", "counter", "TCP packets by their flow's verdict when they came.", "verdict",
		func(w *WorkerMetric) map[string]uint64 { return w.FlowPackets })
	labelled("tschsensor_evictions_total", "counter", "State given up to stay within the memory budget and table bounds, by reason.", "reason",
		func(w *WorkerMetric) map[string]uint64 { return w.Evictions })
	p.family("tschsensor_flows_active", "gauge", "Entries in the flow table.")
	for _, wm := range m.Workers {
		p.sample("tschsensor_flows_active", float64(wm.FlowsActive), "worker", strconv.Itoa(wm.Worker))
	}
	p.family("tschsensor_memory_budget_bytes", "gauge", "The memory budget (--memory-budget) and its shares: the workers' (all of them) and the resolver's.")
	p.sample("tschsensor_memory_budget_bytes", float64(m.Memory.Budget), "part", "total")
	p.sample("tschsensor_memory_budget_bytes", float64(m.Memory.WorkersBudget), "part", "workers")
	p.sample("tschsensor_memory_budget_bytes", float64(m.Memory.ResolverBudget), "part", "resolver")
	p.family("tschsensor_memory_bytes", "gauge", "Memory budget of a worker's state: its share, what is used, the peak.")
	for _, wm := range m.Workers {
		w := strconv.Itoa(wm.Worker)
		p.sample("tschsensor_memory_bytes", float64(wm.Memory.Budget), "worker", w, "kind", "budget")
		p.sample("tschsensor_memory_bytes", float64(wm.Memory.Used), "worker", w, "kind", "used")
		p.sample("tschsensor_memory_bytes", float64(wm.Memory.Peak), "worker", w, "kind", "peak")
	}
	p.family("tschsensor_events_total", "counter", "Call events written to the outputs.")
	p.sample("tschsensor_events_total", float64(m.Events))
	p.family("tschsensor_alerts_total", "counter", "Alerts written to the outputs.")
	p.sample("tschsensor_alerts_total", float64(m.Alerts))
	if len(m.Output.Suppressed) > 0 {
		p.family("tschsensor_alerts_suppressed_total", "counter", "Alerts an entry of the rules file suppressed, by entry (since the file was loaded).")
		for _, s := range m.Output.Suppressed {
			p.sample("tschsensor_alerts_suppressed_total", float64(s.Count), "entry", strconv.Itoa(s.Entry), "reason", s.Reason)
		}
	}
	p.family("tschsensor_dropped_events_total", "counter", "Records lost: detector queue full or refused by a sink.")
	p.sample("tschsensor_dropped_events_total", float64(m.DroppedEvents))
	p.family("tschsensor_dropped_records_total", "counter", "Calls and file operations lost on the full detector queue.")
	p.sample("tschsensor_dropped_records_total", float64(m.DroppedRecords))
	p.family("tschsensor_queue_length", "gauge", "Records waiting for the detector.")
	p.sample("tschsensor_queue_length", float64(m.QueueLen))
	d := m.Delivery
	p.family("tschsensor_dropped_total", "counter", "Records lost, by reason (queue, encode, sink, spool, shutdown).")
	for _, r := range []struct {
		name string
		v    uint64
	}{{"queue", d.Dropped.Queue}, {"encode", d.Dropped.Encode}, {"sink", d.Dropped.Sink}, {"spool", d.Dropped.Spool}, {"shutdown", d.Dropped.Shutdown}} {
		p.sample("tschsensor_dropped_total", float64(r.v), "reason", r.name)
	}
	if d.NATSConnected == nil {
		return
	}
	p.family("tschsensor_nats_connected", "gauge", "1 while the NATS server and stream answer; 0 while records are spooled.")
	p.sample("tschsensor_nats_connected", b2f(*d.NATSConnected))
	for _, c := range []struct {
		name, help string
		v          uint64
	}{
		{"tschsensor_nats_published_total", "Records handed to the NATS sink.", d.Published},
		{"tschsensor_nats_acked_total", "Records the NATS server confirmed.", d.Acked},
		{"tschsensor_nats_spooled_total", "Records written to the spool while NATS was unreachable or slow.", d.Spooled},
		{"tschsensor_nats_resent_total", "Records re-sent from the spool and confirmed.", d.Resent},
	} {
		p.family(c.name, "counter", c.help)
		p.sample(c.name, float64(c.v))
	}
	p.family("tschsensor_nats_spool_records", "gauge", "Records waiting in the spool.")
	p.sample("tschsensor_nats_spool_records", float64(d.SpoolRecords))
}

// writeAuthMetrics writes what the security contexts opened, all workers
// together.
func writeAuthMetrics(p promWriter, c *Counters) {
	p.family("tschsensor_dcerpc_sealed_pdus_total", "counter", "Sealed (PKT_PRIVACY) DCE-RPC request, response and fault PDUs seen.")
	p.sample("tschsensor_dcerpc_sealed_pdus_total", float64(c.DCERPC.SealedPDUs))
	p.family("tschsensor_dcerpc_unsealed_pdus_total", "counter", "Sealed DCE-RPC PDUs opened with supplied secrets, by mechanism.")
	p.sample("tschsensor_dcerpc_unsealed_pdus_total", float64(c.DCERPC.UnsealedPDUs.NTLM), "mechanism", mechNTLM)
	p.sample("tschsensor_dcerpc_unsealed_pdus_total", float64(c.DCERPC.UnsealedPDUs.Kerberos), "mechanism", mechKerberos)
	p.family("tschsensor_dcerpc_unseal_failures_total", "counter", "Sealed DCE-RPC PDUs that did not open with the context's keys.")
	p.sample("tschsensor_dcerpc_unseal_failures_total", float64(c.DCERPC.UnsealFailures))
	p.family("tschsensor_dcerpc_signatures_checked_total", "counter", "Signed (PKT_INTEGRITY) DCE-RPC PDUs checked with keys.")
	p.sample("tschsensor_dcerpc_signatures_checked_total", float64(c.Signatures.Checked))
	p.family("tschsensor_dcerpc_signature_failures_total", "counter", "Signed DCE-RPC PDUs whose signature did not verify.")
	p.sample("tschsensor_dcerpc_signature_failures_total", float64(c.Signatures.Failures))
	p.family("tschsensor_kerberos_tickets_total", "counter", "Kerberos service tickets by result: opened with a supplied key, no key for them, key failed.")
	p.sample("tschsensor_kerberos_tickets_total", float64(c.Kerberos.TicketsOpened), "result", "opened")
	p.sample("tschsensor_kerberos_tickets_total", float64(c.Kerberos.TicketsUnknownKey), "result", "unknown_key")
	p.sample("tschsensor_kerberos_tickets_total", float64(c.Kerberos.TicketsFailed), "result", "failed")
	p.family("tschsensor_smb3_keyed_sessions_total", "counter", "SMB3 sessions given decryption keys, by mechanism.")
	p.sample("tschsensor_smb3_keyed_sessions_total", float64(c.SMB3.KeyedSessions.NTLM), "mechanism", mechNTLM)
	p.sample("tschsensor_smb3_keyed_sessions_total", float64(c.SMB3.KeyedSessions.Kerberos), "mechanism", mechKerberos)
}
