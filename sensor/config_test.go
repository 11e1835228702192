package sensor

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/tschsensor/tschsensor/sensor/output"
)

// TestConfigValidation: what flags can get wrong is refused by New, as a
// ConfigError, before any socket or file is opened.
func TestConfigValidation(t *testing.T) {
	out := output.NewOutput(output.NewWriterSink(&bytes.Buffer{}, false))
	bad := filepath.Join(t.TempDir(), "bad.bpf")
	os.WriteFile(bad, []byte("not a filter"), 0o644)
	for name, cfg := range map[string]LiveConfig{
		"no interface":     {Output: out},
		"no output":        {Interfaces: []string{"lo"}},
		"workers":          {Interfaces: []string{"lo"}, Output: out, Workers: maxWorkers + 1},
		"fanout group":     {Interfaces: []string{"lo", "lo"}, Output: out, FanoutGroup: 0xffff},
		"two filters":      {Interfaces: []string{"lo"}, Output: out, FilterExpr: "tcp", FilterFile: bad},
		"bad filter file":  {Interfaces: []string{"lo"}, Output: out, FilterFile: bad},
		"negative options": {Interfaces: []string{"lo"}, Output: out, Options: Options{MaxCalls: -1}},
	} {
		var ce *ConfigError
		if _, err := NewLive(cfg); !errors.As(err, &ce) {
			t.Errorf("%s: %v, want a ConfigError", name, err)
		}
	}
	for name, cfg := range map[string]ReplayConfig{
		"no output":        {},
		"workers":          {Output: out, Workers: -1},
		"negative options": {Output: out, Options: Options{IdleTimeout: -1}},
	} {
		var ce *ConfigError
		if _, err := NewReplay(cfg); !errors.As(err, &ce) {
			t.Errorf("replay %s: %v, want a ConfigError", name, err)
		}
	}
	if _, err := NewReplay(ReplayConfig{Output: out, Workers: 4}); err != nil {
		t.Errorf("valid replay: %v", err)
	}
}
