package sensor

import (
	"fmt"
	"io"
	"sort"
	"time"

	"github.com/tschsensor/tschsensor/sensor/output"
)

// Stats counts one worker's work. Anomalies are keyed by stable snake_case
// names so that dashboards can follow them across versions.
type Stats struct {
	Packets, Bytes  uint64
	TCPPackets      uint64
	Connections     uint64
	SMBConnections  uint64
	RPCConnections  uint64
	SMBSessions     uint64
	SMB3Encrypted   uint64 // transform messages
	SMB3EncSessions uint64
	SMB3Decrypted   uint64 // transform messages opened with supplied keys
	SMBMessages     uint64
	RPCPDUs         uint64
	Binds           map[string]uint64 // interface name or uuid -> binds
	TschCalls       uint64
	// TschSummarised counts calls of TschCalls that have no event of
	// their own: they are in a flood summary (rpcChannel.evictOldest).
	TschSummarised uint64
	FileOps        uint64
	Gaps           uint64
	GapBytes       uint64
	Resyncs        uint64
	Anomalies      map[string]uint64
	// RecordsLate counts records that reached the detector after records
	// finished later in capture time (see orderer).
	RecordsLate         uint64
	Auth                AuthStats
	FirstTime, LastTime time.Time
	// Flow counts the flow verdict table's work; Evictions counts state
	// given up to stay within bounds, by reason.
	Flow      FlowStats
	Evictions map[string]uint64
	// Memory sums the workers' accounts (Budget: their shares);
	// MemoryBudget is the whole budget the user set (or the default), of
	// which ResolverBudget is the resolver's share for held calls.
	Memory                       MemStats
	MemoryBudget, ResolverBudget int64
}

// AuthStats counts what the security contexts opened: DCE-RPC PDUs sealed
// (PKT_PRIVACY) and signed (PKT_INTEGRITY), Kerberos tickets, SMB3 sessions
// keyed.
type AuthStats struct {
	SealedPDUs        uint64 // sealed request, response and fault PDUs seen
	UnsealedNTLM      uint64
	UnsealedKerberos  uint64
	UnsealFailures    uint64 // with keys, the PDU did not open or verify
	SignedPDUs        uint64 // signed PDUs checked with keys
	SignatureFailures uint64
	TicketsOpened     uint64 // Kerberos tickets decrypted with a supplied key
	TicketsUnknownKey uint64 // no supplied key of the ticket's type and principal
	TicketsFailed     uint64 // a key was tried and did not open it
	SMB3KeyedNTLM     uint64 // SMB3 sessions given keys from NTLM
	SMB3KeyedKerberos uint64 // ... from Kerberos
}

func (a *AuthStats) merge(o *AuthStats) {
	a.SealedPDUs += o.SealedPDUs
	a.UnsealedNTLM += o.UnsealedNTLM
	a.UnsealedKerberos += o.UnsealedKerberos
	a.UnsealFailures += o.UnsealFailures
	a.SignedPDUs += o.SignedPDUs
	a.SignatureFailures += o.SignatureFailures
	a.TicketsOpened += o.TicketsOpened
	a.TicketsUnknownKey += o.TicketsUnknownKey
	a.TicketsFailed += o.TicketsFailed
	a.SMB3KeyedNTLM += o.SMB3KeyedNTLM
	a.SMB3KeyedKerberos += o.SMB3KeyedKerberos
}

func newStats() Stats {
	return Stats{Binds: make(map[string]uint64), Anomalies: make(map[string]uint64), Evictions: make(map[string]uint64)}
}

// anomaly counts a named anomaly.
func (s *Stats) anomaly(name string) { s.Anomalies[name]++ }

// Merge adds o into s.
func (s *Stats) Merge(o *Stats) {
	s.Packets += o.Packets
	s.Bytes += o.Bytes
	s.TCPPackets += o.TCPPackets
	s.Connections += o.Connections
	s.SMBConnections += o.SMBConnections
	s.RPCConnections += o.RPCConnections
	s.SMBSessions += o.SMBSessions
	s.SMB3Encrypted += o.SMB3Encrypted
	s.SMB3EncSessions += o.SMB3EncSessions
	s.SMB3Decrypted += o.SMB3Decrypted
	s.SMBMessages += o.SMBMessages
	s.RPCPDUs += o.RPCPDUs
	s.TschCalls += o.TschCalls
	s.TschSummarised += o.TschSummarised
	s.FileOps += o.FileOps
	s.Gaps += o.Gaps
	s.GapBytes += o.GapBytes
	s.Resyncs += o.Resyncs
	s.RecordsLate += o.RecordsLate
	s.Auth.merge(&o.Auth)
	if s.Binds == nil {
		s.Binds = make(map[string]uint64)
	}
	if s.Anomalies == nil {
		s.Anomalies = make(map[string]uint64)
	}
	for k, v := range o.Binds {
		s.Binds[k] += v
	}
	for k, v := range o.Anomalies {
		s.Anomalies[k] += v
	}
	if s.Evictions == nil {
		s.Evictions = make(map[string]uint64)
	}
	for k, v := range o.Evictions {
		s.Evictions[k] += v
	}
	s.Flow.merge(&o.Flow)
	s.Memory.merge(&o.Memory)
	s.MemoryBudget += o.MemoryBudget
	s.ResolverBudget += o.ResolverBudget
	if s.FirstTime.IsZero() || !o.FirstTime.IsZero() && o.FirstTime.Before(s.FirstTime) {
		s.FirstTime = o.FirstTime
	}
	if o.LastTime.After(s.LastTime) {
		s.LastTime = o.LastTime
	}
}

func sortedKeys(m map[string]uint64) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// WriteSummary prints the end-of-run summary for humans; d is the output's
// Delivery read after the sinks closed.
func (s *Stats) WriteSummary(w io.Writer, elapsed time.Duration, events, alerts uint64, d output.Delivery) {
	mb := float64(s.Bytes) / 1e6
	rate := 0.0
	if elapsed > 0 {
		rate = mb / elapsed.Seconds()
	}
	fmt.Fprintf(w, "tschsensor: %d packets, %.1f MB in %s (%.1f MB/s, %.0f packets/s)\n",
		s.Packets, mb, elapsed.Round(time.Millisecond), rate, float64(s.Packets)/max(elapsed.Seconds(), 1e-9))
	fmt.Fprintf(w, "  connections %d (SMB %d, DCE-RPC/TCP %d), SMB sessions %d, SMB messages %d, RPC PDUs %d\n",
		s.Connections, s.SMBConnections, s.RPCConnections, s.SMBSessions, s.SMBMessages, s.RPCPDUs)
	fmt.Fprintf(w, "  MS-TSCH calls %d, events %d, alerts %d, file ops %d, dropped events %d\n",
		s.TschCalls, events, alerts, s.FileOps, d.DroppedTotal)
	if s.TschSummarised > 0 {
		fmt.Fprintf(w, "  MS-TSCH calls in flood summaries (ended unanswered on a channel past --max-calls, no event each): %d\n", s.TschSummarised)
	}
	if d.DroppedTotal > 0 {
		fmt.Fprintf(w, "  dropped: queue %d, encode %d, sink %d, spool %d, shutdown %d\n",
			d.Dropped.Queue, d.Dropped.Encode, d.Dropped.Sink, d.Dropped.Spool, d.Dropped.Shutdown)
	}
	if d.NATSConnected != nil {
		fmt.Fprintf(w, "  nats: published %d, acked %d, spooled %d, re-sent %d, left in spool %d\n",
			d.Published, d.Acked, d.Spooled, d.Resent, d.SpoolRecords)
	}
	if s.RecordsLate > 0 {
		fmt.Fprintf(w, "  records finished out of capture-time order: %d\n", s.RecordsLate)
	}
	fmt.Fprintf(w, "  SMB3 encrypted: %d messages in %d sessions, %d decrypted with supplied credentials\n", s.SMB3Encrypted, s.SMB3EncSessions, s.SMB3Decrypted)
	fmt.Fprintf(w, "  TCP gaps %d (%d bytes lost), resyncs %d\n", s.Gaps, s.GapBytes, s.Resyncs)
	au := &s.Auth
	fmt.Fprintf(w, "  DCE-RPC sealed PDUs %d: opened %d NTLM, %d Kerberos, %d failed; signed PDUs checked %d, %d failed\n",
		au.SealedPDUs, au.UnsealedNTLM, au.UnsealedKerberos, au.UnsealFailures, au.SignedPDUs, au.SignatureFailures)
	if au.TicketsOpened+au.TicketsUnknownKey+au.TicketsFailed+au.SMB3KeyedNTLM+au.SMB3KeyedKerberos > 0 {
		fmt.Fprintf(w, "  Kerberos tickets opened %d, no key %d, failed %d; SMB3 sessions keyed: %d NTLM, %d Kerberos\n",
			au.TicketsOpened, au.TicketsUnknownKey, au.TicketsFailed, au.SMB3KeyedNTLM, au.SMB3KeyedKerberos)
	}
	fmt.Fprintf(w, "  flows:")
	for v := range numVerdicts {
		fmt.Fprintf(w, " %s=%d (%d packets)", verdict(v), s.Flow.Flows[v], s.Flow.Packets[v])
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "  memory: budget %.1f MiB (workers %.1f MiB, peak %.1f MiB; resolver %.1f MiB)\n",
		mib(s.MemoryBudget), mib(s.Memory.Budget), mib(s.Memory.Peak), mib(s.ResolverBudget))
	if len(s.Evictions) > 0 {
		fmt.Fprintf(w, "  evictions:")
		for _, k := range sortedKeys(s.Evictions) {
			fmt.Fprintf(w, " %s=%d", k, s.Evictions[k])
		}
		fmt.Fprintln(w)
	}
	if len(s.Binds) > 0 {
		fmt.Fprintf(w, "  binds:")
		for _, k := range sortedKeys(s.Binds) {
			fmt.Fprintf(w, " %s=%d", k, s.Binds[k])
		}
		fmt.Fprintln(w)
	}
	if len(s.Anomalies) > 0 {
		fmt.Fprintf(w, "  anomalies:")
		for _, k := range sortedKeys(s.Anomalies) {
			fmt.Fprintf(w, " %s=%d", k, s.Anomalies[k])
		}
		fmt.Fprintln(w)
	}
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }
