package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tschsensor/tschsensor/detect"
	"github.com/tschsensor/tschsensor/dissect"
	"github.com/tschsensor/tschsensor/sensor"
)

// commonFlags are the flags replay and run share.
type commonFlags struct {
	observer    string
	credentials string
	keytabs     keytabList
	maxMessage  int
	maxStub     int
	maxCalls    int
	maxFiles    int
	maxXML      int
	memBudget   int
	idle        time.Duration
	window      time.Duration
	quiet       bool
	rules       string
}

func addCommonFlags(fs *flag.FlagSet) *commonFlags {
	c := &commonFlags{}
	host, _ := os.Hostname()
	fs.StringVar(&c.observer, "observer", envOr("TSCHSENSOR_OBSERVER", host), "observer.name in events (env TSCHSENSOR_OBSERVER)")
	fs.StringVar(&c.credentials, "credentials", os.Getenv("TSCHSENSOR_CREDENTIALS"), "file of DOMAIN\\user:password, DOMAIN\\user:nt:HASH or Kerberos key (principal@REALM:aes256:HEX, aes128:) lines to open sealed RPC and SMB3 (env TSCHSENSOR_CREDENTIALS; one line in TSCHSENSOR_CREDENTIAL)")
	fs.Var(&c.keytabs, "keytab", "MIT keytab `file` (0x0502: ktutil, msktutil, samba-tool domain exportkeytab) of the target servers' accounts, to open Kerberos tickets, sealed RPC and SMB3; repeatable (env TSCHSENSOR_KEYTAB: paths separated by ':'). It holds long-term keys: keep it mode 600, never on the sensor longer than the investigation (docs/decryption.md)")
	fs.IntVar(&c.maxMessage, "max-message", sensor.DefaultMaxMessage, "largest SMB message or RPC PDU buffered per direction (bytes)")
	fs.IntVar(&c.maxStub, "max-stub", sensor.DefaultMaxStub, "largest reassembled RPC stub per call (bytes)")
	fs.IntVar(&c.maxCalls, "max-calls", sensor.DefaultMaxCalls, "RPC calls awaiting a response per channel")
	fs.IntVar(&c.maxFiles, "max-files", sensor.DefaultMaxFiles, "open SMB files, pipes and trees per connection")
	fs.IntVar(&c.maxXML, "max-xml", dissect.DefaultTaskXMLLimit, "task XML kept and parsed per call (bytes); longer XML is cut and flagged")
	fs.IntVar(&c.memBudget, "memory-budget", sensor.DefaultMemoryBudget>>20, "memory for flow, connection, message, stub and held-call state, all workers together (MiB); past it the least valuable state is evicted, never a new SMB/RPC connection")
	fs.DurationVar(&c.idle, "idle-timeout", sensor.DefaultIdleTimeout, "end TCP connections idle this long (capture time)")
	fs.DurationVar(&c.window, "atexec-window", detect.DefaultAtExecWindow, "time from task registration to the last step of an AtExec chain")
	fs.BoolVar(&c.quiet, "quiet", false, "no summary or progress on stderr")
	fs.StringVar(&c.rules, "rules", os.Getenv("TSCHSENSOR_RULES"), "rules `FILE` (YAML: suppress, severity, custom rules; see docs/rules.example.yaml); run reloads it on SIGHUP (env TSCHSENSOR_RULES)")
	return c
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func (c *commonFlags) options() (sensor.Options, detect.Options, error) {
	o := sensor.Options{MaxMessage: c.maxMessage, MaxStub: c.maxStub, MaxCalls: c.maxCalls, MaxFiles: c.maxFiles, IdleTimeout: c.idle,
		MemoryBudget: int64(c.memBudget) << 20,
		PanicHook:    panicReporter(os.Stderr), Tsch: dissect.TschOptions{XMLLimit: c.maxXML}}
	d := detect.Options{Observer: c.observer, AtExecWindow: c.window, Rules: new(atomic.Pointer[detect.Ruleset])}
	if c.rules != "" {
		rs, err := detect.LoadRules(c.rules)
		if err != nil {
			return o, d, err
		}
		d.Rules.Store(rs)
	}
	if err := o.Validate(); err != nil {
		return o, d, err
	}
	o.Warn = func(msg string) { fmt.Fprintln(os.Stderr, "tschsensor: warning:", msg) }
	if os.Getenv("GOMEMLIMIT") == "" {
		// The runtime collects before the heap outgrows the budget.
		debug.SetMemoryLimit(sensor.MemoryLimit(o.MemoryBudget))
	}
	var data []byte
	if c.credentials != "" {
		b, warn, err := readCredentials(c.credentials)
		if err != nil {
			return o, d, err
		}
		if warn != "" {
			fmt.Fprintln(os.Stderr, "tschsensor: warning:", warn)
		}
		data = b
	}
	// One secret can come from the environment instead of a file.
	from := c.credentials
	if line := os.Getenv(credentialEnv); line != "" {
		if len(data) > 0 {
			data = append(data, '\n')
			from += " + $" + credentialEnv
		} else {
			from = "$" + credentialEnv
		}
		data = append(data, line...)
	}
	if len(data) > 0 {
		creds, err := dissect.ParseCredentials(data)
		if err != nil {
			return o, d, fmt.Errorf("credentials from %s: %w", from, err)
		}
		o.Credentials = creds
	}
	keys, err := loadKerberosKeys(c.keytabs.paths(), o.Credentials, os.Stderr)
	if err != nil {
		return o, d, err
	}
	o.KerberosKeys = keys
	return o, d, nil
}

// credentialEnv holds one DOMAIN\user:password or DOMAIN\user:nt:HASH line.
const credentialEnv = "TSCHSENSOR_CREDENTIAL"

// readCredentials reads the credentials file; a file readable by others
// draws a warning (it holds passwords).
func readCredentials(path string) ([]byte, string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, "", fmt.Errorf("credentials: %w", err)
	}
	warn := ""
	if fi.Mode().Perm()&0o077 != 0 {
		warn = fmt.Sprintf("credentials file %s is accessible by group or others (mode %04o); use chmod 600", path, fi.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, "", fmt.Errorf("credentials: %w", err)
	}
	return b, warn, nil
}

// panicReporter prints the first few panics the workers caught, with their
// stacks, so that a bug hit by hostile input is seen and can be reported;
// the rest are only counted (anomaly bug_panic_recovered).
func panicReporter(w io.Writer) func(any) {
	var mu sync.Mutex
	n := 0
	return func(r any) {
		mu.Lock()
		defer mu.Unlock()
		if n++; n <= 3 {
			fmt.Fprintf(w, "tschsensor: bug: recovered panic (packet skipped, counted as %s): %v\n%s\n", sensor.AnomalyPanic, r, debug.Stack())
		}
	}
}
