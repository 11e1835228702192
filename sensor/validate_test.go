package sensor

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/tschsensor/tschsensor/sensor/output"
)

// TestValidate: zero and negative limits given explicitly are errors that
// name the option; a complete configuration passes.
func TestValidate(t *testing.T) {
	good := Options{MaxMessage: 1, MaxStub: DefaultMaxStub, MaxCalls: 1, MaxFiles: 1, IdleTimeout: 1, MemoryBudget: DefaultMemoryBudget}
	good.Tsch.XMLLimit = 1
	if err := good.Validate(); err != nil {
		t.Fatalf("valid options: %v", err)
	}
	for _, tc := range []struct {
		name string
		mod  func(*Options)
	}{
		{"max-message", func(o *Options) { o.MaxMessage = 0 }},
		{"max-stub", func(o *Options) { o.MaxStub = -1 }},
		{"max-calls", func(o *Options) { o.MaxCalls = 0 }},
		{"max-xml", func(o *Options) { o.Tsch.XMLLimit = -5 }},
		{"idle-timeout", func(o *Options) { o.IdleTimeout = 0 }},
		{"memory-budget", func(o *Options) { o.MemoryBudget = 1 << 20 }},
		{"max flows", func(o *Options) { o.MaxFlows = -1 }},
	} {
		o := good
		tc.mod(&o)
		if err := o.Validate(); err == nil || !strings.Contains(err.Error(), tc.name) {
			t.Errorf("%s: error %v, want one naming it", tc.name, err)
		}
	}
}

// TestValidateOncePerBound: a bad bound is said once, in one set of words,
// whether Validate (flags) or NewReplay and NewLive (the library) find it.
func TestValidateOncePerBound(t *testing.T) {
	good := Options{MaxMessage: 1, MaxStub: DefaultMaxStub, MaxCalls: 1, MaxFiles: 1, IdleTimeout: 1, MemoryBudget: DefaultMemoryBudget}
	good.Tsch.XMLLimit = 1
	for _, tc := range []struct {
		name, want string
		mod        func(*Options)
	}{
		{"memory-budget", "memory-budget must be positive, got -1 MiB", func(o *Options) { o.MemoryBudget = -1 << 20 }},
		{"memory-budget", "memory-budget must be positive, got -5 bytes", func(o *Options) { o.MemoryBudget = -5 }},
		{"idle-timeout", "idle-timeout must be positive, got -1s", func(o *Options) { o.IdleTimeout = -time.Second }},
		{"max-message", "max-message must be positive, got -1", func(o *Options) { o.MaxMessage = -1 }},
		{"max-xml", "max-xml must be positive, got -5", func(o *Options) { o.Tsch.XMLLimit = -5 }},
		{"max flows", "max flows must not be negative, got -1", func(o *Options) { o.MaxFlows = -1 }},
	} {
		o := good
		tc.mod(&o)
		err := o.Validate()
		if err == nil || strings.Count(err.Error(), "must") != 1 || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate: %v, want %q alone", err, tc.want)
		}
		// The library takes zero as the default; negative is refused in
		// the same words, once.
		_, err = NewReplay(ReplayConfig{Options: o, Output: output.NewOutput(output.NewWriterSink(io.Discard, false))})
		want := strings.Replace(tc.want, "must be positive", "must not be negative", 1)
		if err == nil || strings.Count(err.Error(), "must") != 1 || !strings.Contains(err.Error(), want) {
			t.Errorf("NewReplay: %v, want %q alone", err, want)
		}
	}
	// Several bad bounds: each said.
	o := good
	o.MemoryBudget, o.IdleTimeout, o.MaxCalls = -1, -1, 0
	err := o.Validate()
	for _, name := range []string{"memory-budget", "idle-timeout", "max-calls"} {
		if err == nil || strings.Count(err.Error(), name) != 1 {
			t.Errorf("Validate: %v, want %s once", err, name)
		}
	}
}

// TestCaptureTruncatedWarnsOnce: frames cut by the snap length are counted
// each, and said once.
func TestCaptureTruncatedWarnsOnce(t *testing.T) {
	var warnings []string
	w := NewWorker(Options{Warn: func(m string) { warnings = append(warnings, m) }}, &discardRecorder{}, nil)
	c := newTCPConv(445)
	for range 3 {
		b, ci := c.frame(0, tcpACK, bytes.Repeat([]byte{0}, 1000))
		ci.CaptureLength = 100
		w.Packet(b[:100], ci, layers.LinkTypeEthernet)
	}
	w.Packet([]byte{1, 2, 3}, gopacket.CaptureInfo{CaptureLength: 3, Length: 3}, layers.LinkType(147))
	if w.Stats().Anomalies["capture_truncated"] != 3 || len(warnings) != 2 ||
		!strings.Contains(warnings[0], "snap length") || !strings.Contains(warnings[1], "link type 147") {
		t.Errorf("anomalies %v, warnings %q", w.Stats().Anomalies, warnings)
	}
}
