package main

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"text/tabwriter"

	"github.com/tschsensor/tschsensor/detect"
)

const rulesUsage = `usage: tschsensor rules <check FILE... | list [--rules FILE]>

  check FILE...   load and compile rules files; exit 1 naming file:line:column of every mistake
  list            print every built-in rule (and those of --rules FILE): id, severity, technique
`

// runRules implements `tschsensor rules`.
func runRules(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, rulesUsage)
		return 2
	}
	switch args[0] {
	case "check":
		return rulesCheck(args[1:], stdout, stderr)
	case "list":
		return rulesList(args[1:], stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, rulesUsage)
		return 0
	}
	fmt.Fprintf(stderr, "tschsensor rules: unknown command %q\n\n%s", args[0], rulesUsage)
	return 2
}

func rulesCheck(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("rules check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, rulesUsage) }
	if rc, ok := parseFlags(fs, args, true, stderr); !ok {
		return rc
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return 2
	}
	rc := 0
	for _, f := range fs.Args() {
		rs, err := detect.LoadRules(f)
		if err != nil {
			fmt.Fprintln(stderr, err)
			rc = 1
			continue
		}
		fmt.Fprintf(stdout, "%s: ok: %d suppressions, %d severity overrides, %d custom rules\n", f,
			len(rs.Suppressions()), rs.Overrides(), rs.CustomRules())
	}
	return rc
}

func rulesList(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("rules list", flag.ContinueOnError)
	fs.SetOutput(stderr)
	file := fs.String("rules", os.Getenv("TSCHSENSOR_RULES"), "rules `FILE` whose custom rules and severities to include")
	if rc, ok := parseFlags(fs, args, false, stderr); !ok {
		return rc
	}
	var rs *detect.Ruleset
	if *file != "" {
		var err error
		if rs, err = detect.LoadRules(*file); err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSEVERITY\tTECHNIQUE\tTACTIC\tSOURCE\tNAME")
	for _, r := range detect.ListRules(rs) {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\n", r.ID, r.Severity, r.Technique, r.Tactic, r.Source, r.Name)
	}
	tw.Flush()
	return 0
}

// reloadRules swaps in the rules file again when it loads; a file that no
// longer loads leaves the rules in force untouched.
func reloadRules(path string, holder *atomic.Pointer[detect.Ruleset], log *slog.Logger) bool {
	if path == "" {
		log.Info("SIGHUP: no rules file to reload (--rules)")
		return false
	}
	rs, err := detect.LoadRules(path)
	if err != nil {
		log.Error("rules not reloaded, the previous ones stay in force", "file", path, "error", err)
		return false
	}
	// Entries that did not change keep counting from where they were.
	rs.Carry(holder.Load())
	holder.Store(rs)
	log.Info("rules reloaded", "file", path, "suppressions", len(rs.Suppressions()), "custom_rules", rs.CustomRules())
	return true
}

// watchSIGHUP reloads the rules file on every SIGHUP until stop is closed.
// The detector reads the pointer once per record, so capture goes on.
func watchSIGHUP(path string, holder *atomic.Pointer[detect.Ruleset], log *slog.Logger, stop <-chan struct{}) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		defer signal.Stop(hup)
		for {
			select {
			case <-hup:
				reloadRules(path, holder, log)
			case <-stop:
				return
			}
		}
	}()
}

// writeSuppressions prints what each suppress entry hid.
func writeSuppressions(w io.Writer, rs *detect.Ruleset) {
	for _, s := range rs.Suppressions() {
		fmt.Fprintf(w, "  suppressed by %s entry %d (line %d, %q): %d\n", rs.File(), s.Entry, s.Line, s.Reason, s.Count)
	}
}
