// Command tschsensor is a passive network sensor for remote scheduled-task
// creation (MS-TSCH over SMB and DCE-RPC).
//
//	tschsensor replay [flags] FILE...   read pcap/pcapng files
//	tschsensor run -i IFACE [flags]     sniff live traffic (AF_PACKET)
//	tschsensor tail [flags]             print what the sensor publishes to NATS
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
)

const usage = `usage: tschsensor <command> [flags]

commands:
  replay FILE...   decode capture files (pcap, pcapng, gzip'd) and print JSON events
  run -i IFACE     capture live from one or more interfaces (AF_PACKET)
  tail             print events and alerts from NATS
  rules            check a rules file, list the rules
  version          print the version

Run 'tschsensor <command> -h' for a command's flags.
`

// version is set at link time (-ldflags "-X main.version=...").
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "replay":
		return runReplay(args[1:], stdout, stderr)
	case "run":
		return runLive(args[1:], stdout, stderr)
	case "tail":
		return runTail(args[1:], stdout, stderr)
	case "rules":
		return runRules(args[1:], stdout, stderr)
	case "version", "-version", "--version":
		fmt.Fprintln(stdout, "tschsensor", version)
		return 0
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "tschsensor: unknown command %q\n\n%s", args[0], usage)
	return 2
}

// parseFlags parses a subcommand's flags. When ok is false the command ends
// with rc: 0 after -h, 2 for a bad flag or, for a command that takes no
// arguments, a stray one.
func parseFlags(fs *flag.FlagSet, args []string, takesArgs bool, stderr io.Writer) (rc int, ok bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0, false
		}
		return 2, false
	}
	if !takesArgs && fs.NArg() > 0 {
		fmt.Fprintf(stderr, "tschsensor %s: unexpected argument %q\n", fs.Name(), fs.Arg(0))
		return 2, false
	}
	return 0, true
}
