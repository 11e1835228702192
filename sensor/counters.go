package sensor

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/tschsensor/tschsensor/detect"
	"github.com/tschsensor/tschsensor/sensor/output"
)

// Counters is the machine-readable form of a run's counters: the one JSON
// object `replay --stats-file` writes at the end, and the counters every
// live tschsensor.stats metric record carries (LiveMetric embeds it). New
// counters go into a section or a new section; names are never reused.
type Counters struct {
	Packets     PacketCounters     `json:"packets"`
	Connections ConnectionCounters `json:"connections"`
	SMB         SMBCounters        `json:"smb"`
	SMB3        SMB3Counters       `json:"smb3"`
	DCERPC      DCERPCCounters     `json:"dcerpc"`
	Signatures  SignatureCounters  `json:"signatures"`
	Kerberos    KerberosCounters   `json:"kerberos"`
	Calls       CallCounters       `json:"calls"`
	Output      OutputCounters     `json:"output"`
	Delivery    output.Delivery    `json:"delivery"`
	Anomalies   map[string]uint64  `json:"anomalies"`
	Memory      MemoryCounters     `json:"memory"`
}

// MemoryCounters: the memory budget (bytes) as the user set it and as it
// was shared out, and what the workers' state took of their shares.
type MemoryCounters struct {
	Budget         int64 `json:"budget"`
	WorkersBudget  int64 `json:"workers_budget"`
	ResolverBudget int64 `json:"resolver_budget"`
	WorkersUsed    int64 `json:"workers_used"`
	WorkersPeak    int64 `json:"workers_peak"`
}

// PacketCounters: what was read and how whole the TCP streams were.
type PacketCounters struct {
	Total       uint64 `json:"total"`
	TCP         uint64 `json:"tcp"`
	Bytes       uint64 `json:"bytes"`
	TCPGaps     uint64 `json:"tcp_gaps"`
	TCPGapBytes uint64 `json:"tcp_gap_bytes"`
	Resyncs     uint64 `json:"resyncs"`
}

// ConnectionCounters: TCP connections followed, by what they carried.
type ConnectionCounters struct {
	Total     uint64 `json:"total"`
	SMB       uint64 `json:"smb"`
	DCERPCTCP uint64 `json:"dcerpc_tcp"`
}

// SMBCounters: SMB1/2/3 sessions set up and messages decoded.
type SMBCounters struct {
	Sessions uint64 `json:"sessions"`
	Messages uint64 `json:"messages"`
}

// ByMechanism splits a count by the authentication that keyed it.
type ByMechanism struct {
	NTLM     uint64 `json:"ntlm"`
	Kerberos uint64 `json:"kerberos"`
}

// SMB3Counters: encrypted SMB3 traffic and what supplied secrets opened.
type SMB3Counters struct {
	EncryptedMessages uint64      `json:"encrypted_messages"`
	EncryptedSessions uint64      `json:"encrypted_sessions"`
	DecryptedMessages uint64      `json:"decrypted_messages"`
	KeyedSessions     ByMechanism `json:"keyed_sessions"`
}

// DCERPCCounters: sealed (PKT_PRIVACY) request, response and fault PDUs
// seen, opened by mechanism, and those that did not open with the keys the
// context had. With no secret nothing opens; with the right one every PDU
// opens and none fails.
type DCERPCCounters struct {
	SealedPDUs     uint64      `json:"sealed_pdus"`
	UnsealedPDUs   ByMechanism `json:"unsealed_pdus"`
	UnsealFailures uint64      `json:"unseal_failures"`
}

// SignatureCounters: DCE-RPC PDUs at PKT_INTEGRITY checked with keys.
type SignatureCounters struct {
	Checked  uint64 `json:"checked"`
	Failures uint64 `json:"failures"`
}

// KerberosCounters: AP-REQ tickets the supplied keys opened, found no key
// for, or failed to open.
type KerberosCounters struct {
	TicketsOpened     uint64 `json:"tickets_opened"`
	TicketsUnknownKey uint64 `json:"tickets_unknown_key"`
	TicketsFailed     uint64 `json:"tickets_failed"`
}

// CallCounters: DCE-RPC PDUs and binds, MS-TSCH calls and SMB file
// operations reported.
type CallCounters struct {
	RPCPDUs uint64            `json:"rpc_pdus"`
	Binds   map[string]uint64 `json:"binds"`
	Tsch    uint64            `json:"tsch"`
	// TschSummarised: calls of Tsch without an event of their own, in a
	// flood summary.
	TschSummarised uint64 `json:"tsch_summarised"`
	FileOps        uint64 `json:"file_ops"`
}

// OutputCounters: events and alerts written to the outputs (what was lost
// on the way is in Delivery).
type OutputCounters struct {
	Events uint64 `json:"events"`
	Alerts uint64 `json:"alerts"`
	// Suppressed: what each suppress entry of the rules file (--rules) hid
	// since the file was loaded; the alerts it counts are not in Alerts.
	Suppressed []detect.SuppressionCount `json:"suppressed,omitempty"`
}

// Counters renders s; out and del say what reached the outputs and what
// was lost.
func (s *Stats) Counters(out OutputCounters, del output.Delivery) Counters {
	a := &s.Auth
	c := Counters{
		Packets:     PacketCounters{Total: s.Packets, TCP: s.TCPPackets, Bytes: s.Bytes, TCPGaps: s.Gaps, TCPGapBytes: s.GapBytes, Resyncs: s.Resyncs},
		Connections: ConnectionCounters{Total: s.Connections, SMB: s.SMBConnections, DCERPCTCP: s.RPCConnections},
		SMB:         SMBCounters{Sessions: s.SMBSessions, Messages: s.SMBMessages},
		SMB3: SMB3Counters{EncryptedMessages: s.SMB3Encrypted, EncryptedSessions: s.SMB3EncSessions, DecryptedMessages: s.SMB3Decrypted,
			KeyedSessions: ByMechanism{NTLM: a.SMB3KeyedNTLM, Kerberos: a.SMB3KeyedKerberos}},
		DCERPC: DCERPCCounters{SealedPDUs: a.SealedPDUs, UnsealedPDUs: ByMechanism{NTLM: a.UnsealedNTLM, Kerberos: a.UnsealedKerberos},
			UnsealFailures: a.UnsealFailures},
		Signatures: SignatureCounters{Checked: a.SignedPDUs, Failures: a.SignatureFailures},
		Kerberos:   KerberosCounters{TicketsOpened: a.TicketsOpened, TicketsUnknownKey: a.TicketsUnknownKey, TicketsFailed: a.TicketsFailed},
		Calls:      CallCounters{RPCPDUs: s.RPCPDUs, Binds: copyCounts(s.Binds), Tsch: s.TschCalls, TschSummarised: s.TschSummarised, FileOps: s.FileOps},
		Output:     out,
		Delivery:   del,
		Anomalies:  copyCounts(s.Anomalies),
		Memory: MemoryCounters{Budget: s.MemoryBudget, WorkersBudget: s.Memory.Budget, ResolverBudget: s.ResolverBudget,
			WorkersUsed: s.Memory.Used, WorkersPeak: s.Memory.Peak},
	}
	return c
}

// copyCounts copies m, never nil, so that JSON shows {} rather than null.
func copyCounts(m map[string]uint64) map[string]uint64 {
	c := make(map[string]uint64, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

// WriteCountersFile writes c as one JSON object to path, through a
// temporary file renamed into place so that a reader never sees half.
func WriteCountersFile(path string, c Counters) error {
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return fmt.Errorf("stats file: %w", err)
	}
	b = append(b, '\n')
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tschsensor-stats-*")
	if err != nil {
		return fmt.Errorf("stats file: %w", err)
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return fmt.Errorf("stats file %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("stats file %s: %w", path, err)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("stats file %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("stats file %s: %w", path, err)
	}
	return nil
}
