// Command tschsensor is a passive network sensor for remote scheduled-task
// creation (MS-TSCH over SMB and DCE-RPC).
//
//	tschsensor replay [flags] FILE...   read pcap/pcapng files
//	tschsensor run -i IFACE [flags]     sniff live traffic (AF_PACKET)
//	tschsensor tail [flags]             print what the sensor publishes to NATS
package main

import (
	"fmt"
	"io"
	"os"
)

const usage = `usage: tschsensor <command> [flags]

commands:
  replay FILE...   decode capture files (pcap, pcapng, gzip'd) and print JSON events
  run -i IFACE     capture live from one or more interfaces (AF_PACKET)
  tail             print events and alerts from NATS
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
