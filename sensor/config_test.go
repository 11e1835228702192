package sensor

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// TestReadFilterFile loads what `tcpdump -ddd` printed into a file: the
// same program CompileFilter gets by running tcpdump itself.
func TestReadFilterFile(t *testing.T) {
	if _, err := exec.LookPath("tcpdump"); err != nil {
		t.Skip("tcpdump not installed")
	}
	const expr = "tcp port 445 or tcp port 135"
	out, err := exec.Command("tcpdump", "-ddd", "-y", "EN10MB", "-s", "262144", "--", expr).Output()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "smb.bpf")
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := ReadFilterFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want, err := CompileFilter(context.Background(), expr, 1, 262144)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) < 4 || !reflect.DeepEqual(got, want) {
		t.Errorf("file gave %d instructions, tcpdump %d", len(got), len(want))
	}
	// The program keeps the untagged SYNs to port 445 and drops the rest.
	vm := newVM(t, got)
	for _, f := range synthFrames(t) {
		if tcp, vlan := isTCP(f); !tcp || vlan {
			if n, _ := vm.Run(f); n != 0 {
				t.Errorf("frame %x kept by the filter", f)
			}
			continue
		}
		if n, err := vm.Run(f); err != nil || n == 0 {
			t.Errorf("port 445 SYN dropped by the filter (%d, %v)", n, err)
		}
	}

	for name, data := range map[string][]byte{
		"garbage":   []byte("tcp port 445\n"),
		"too large": bytes.Repeat([]byte("40 0 0 12\n"), maxFilterFile/10+1),
		"short":     []byte("3\n40 0 0 12\n"),
	} {
		p := filepath.Join(t.TempDir(), "bad.bpf")
		os.WriteFile(p, data, 0o644)
		if _, err := ReadFilterFile(p); err == nil || !strings.Contains(err.Error(), p) {
			t.Errorf("%s: %v, want an error naming the file", name, err)
		}
	}
	if _, err := ReadFilterFile(filepath.Join(t.TempDir(), "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

// TestConfigValidation: what flags can get wrong is refused by New, as a
// ConfigError, before any socket or file is opened.
func TestConfigValidation(t *testing.T) {
	out := NewOutput(NewWriterSink(&bytes.Buffer{}, false))
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
