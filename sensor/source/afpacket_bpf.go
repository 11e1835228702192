package source

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/google/gopacket/layers"
	"golang.org/x/net/bpf"
)

// bpfMaxInsns is the kernel's bound on a classic BPF program (BPF_MAXINSNS).
const bpfMaxInsns = 4096

// DefaultFilter returns the filter installed when none is given: TCP over
// IPv4 and IPv6 (also behind IPv6 extension headers, which the worker
// judges), and every VLAN-tagged frame the kernel left tagged (QinQ inner
// tags), cut at snapLen. RPC uses dynamic ports, so no port is filtered.
func DefaultFilter(link layers.LinkType, snapLen int) ([]bpf.RawInstruction, error) {
	if snapLen <= 0 {
		snapLen = DefaultSnapLen
	}
	keep := bpf.RetConstant{Val: uint32(snapLen)}
	drop := bpf.RetConstant{Val: 0}
	var prog []bpf.Instruction
	switch link {
	case layers.LinkTypeEthernet:
		prog = []bpf.Instruction{
			/* 0 */ bpf.LoadAbsolute{Off: 12, Size: 2},
			/* 1 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: ethIPv4, SkipTrue: 5},
			/* 2 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: ethIPv6, SkipTrue: 7},
			/* 3 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: ethDot1Q, SkipTrue: 13},
			/* 4 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: ethQinQ, SkipTrue: 12},
			/* 5 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: ethQinQ2, SkipTrue: 11},
			/* 6 */ drop,
			// IPv4: protocol TCP (fragments too: the worker reassembles).
			/* 7 */ bpf.LoadAbsolute{Off: 14 + 9, Size: 1},
			/* 8 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: protoTCP, SkipTrue: 8},
			/* 9 */ drop,
			// IPv6: next header TCP, or an extension header.
			/* 10 */ bpf.LoadAbsolute{Off: 14 + 6, Size: 1},
			/* 11 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: protoTCP, SkipTrue: 5},
			/* 12 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: 0, SkipTrue: 4}, // hop-by-hop
			/* 13 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: 43, SkipTrue: 3}, // routing
			/* 14 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: 44, SkipTrue: 2}, // fragment
			/* 15 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: 60, SkipTrue: 1}, // destination options
			/* 16 */ drop,
			/* 17 */ keep,
		}
	case layers.LinkTypeRaw:
		prog = []bpf.Instruction{
			/* 0 */ bpf.LoadAbsolute{Off: 0, Size: 1},
			/* 1 */ bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: 0xf0},
			/* 2 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: 0x40, SkipTrue: 2},
			/* 3 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: 0x60, SkipTrue: 4},
			/* 4 */ drop,
			/* 5 */ bpf.LoadAbsolute{Off: 9, Size: 1},
			/* 6 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: protoTCP, SkipTrue: 7},
			/* 7 */ drop,
			/* 8 */ bpf.LoadAbsolute{Off: 6, Size: 1},
			/* 9 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: protoTCP, SkipTrue: 4},
			/* 10 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: 0, SkipTrue: 3},
			/* 11 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: 43, SkipTrue: 2},
			/* 12 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: 44, SkipTrue: 1},
			/* 13 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: 60, SkipFalse: 1},
			/* 14 */ keep,
			/* 15 */ drop,
		}
	default:
		return nil, fmt.Errorf("no default filter for link type %v", link)
	}
	raw, err := bpf.Assemble(prog)
	if err != nil {
		return nil, fmt.Errorf("assemble default filter: %w", err)
	}
	return raw, nil
}

// ErrNoTcpdump says that --bpf needs tcpdump to compile its expression.
var ErrNoTcpdump = errors.New("tcpdump is not installed: --bpf compiles the expression with `tcpdump -ddd` (apt-get install tcpdump), or leave --bpf out for the built-in TCP filter")

// CompileFilter compiles a tcpdump expression for the link type by running
// `tcpdump -ddd`, which needs neither an interface nor privileges: the
// sensor stays free of libpcap and cgo. snapLen is the length the filter
// returns for accepted packets.
func CompileFilter(ctx context.Context, expr string, link layers.LinkType, snapLen int) ([]bpf.RawInstruction, error) {
	path, err := exec.LookPath("tcpdump")
	if err != nil {
		return nil, ErrNoTcpdump
	}
	dlt := "EN10MB"
	if link == layers.LinkTypeRaw {
		dlt = "RAW"
	}
	if snapLen <= 0 {
		snapLen = DefaultSnapLen
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, "-ddd", "-y", dlt, "-s", strconv.Itoa(snapLen), "--", expr)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = err.Error()
		}
		return nil, fmt.Errorf("filter %q: tcpdump: %s", expr, msg)
	}
	prog, err := ParseDDD(stdout.Bytes())
	if err != nil {
		return nil, fmt.Errorf("filter %q: %w", expr, err)
	}
	return prog, nil
}

// maxFilterFile bounds a filter file: bpfMaxInsns lines of four numbers.
const maxFilterFile = 1 << 20

// ReadFilterFile loads a filter compiled beforehand with `tcpdump -ddd`
// (for example `tcpdump -ddd -y EN10MB -s 262144 'tcp port 445' > f.bpf`),
// so that an image without tcpdump, such as a FROM scratch container, can
// still filter.
func ReadFilterFile(path string) ([]bpf.RawInstruction, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("filter file: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxFilterFile+1))
	if err != nil {
		return nil, fmt.Errorf("filter file %s: %w", path, err)
	}
	if len(b) > maxFilterFile {
		return nil, fmt.Errorf("filter file %s: larger than %d bytes", path, maxFilterFile)
	}
	prog, err := ParseDDD(b)
	if err != nil {
		return nil, fmt.Errorf("filter file %s: %w", path, err)
	}
	return prog, nil
}

// ParseDDD parses the output of `tcpdump -ddd`: a count, then one
// instruction a line as four decimal numbers "code jt jf k".
func ParseDDD(out []byte) ([]bpf.RawInstruction, error) {
	sc := bufio.NewScanner(bytes.NewReader(out))
	var prog []bpf.RawInstruction
	n := -1
	line := 0
	for sc.Scan() {
		line++
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		if n < 0 {
			if len(f) != 1 {
				return nil, fmt.Errorf("tcpdump -ddd line %d: want the instruction count, got %q", line, sc.Text())
			}
			v, err := strconv.Atoi(f[0])
			if err != nil || v <= 0 || v > bpfMaxInsns {
				return nil, fmt.Errorf("tcpdump -ddd line %d: bad instruction count %q", line, f[0])
			}
			n = v
			prog = make([]bpf.RawInstruction, 0, n)
			continue
		}
		if len(f) != 4 {
			return nil, fmt.Errorf("tcpdump -ddd line %d: want 4 numbers, got %q", line, sc.Text())
		}
		var v [4]uint64
		for i, bits := range [4]int{16, 8, 8, 32} {
			x, err := strconv.ParseUint(f[i], 10, bits)
			if err != nil {
				return nil, fmt.Errorf("tcpdump -ddd line %d: %w", line, err)
			}
			v[i] = x
		}
		if len(prog) == n {
			return nil, fmt.Errorf("tcpdump -ddd line %d: more than the %d instructions announced", line, n)
		}
		prog = append(prog, bpf.RawInstruction{Op: uint16(v[0]), Jt: uint8(v[1]), Jf: uint8(v[2]), K: uint32(v[3])})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("tcpdump -ddd: %w", err)
	}
	if n < 0 || len(prog) != n {
		return nil, fmt.Errorf("tcpdump -ddd: %d instructions announced, %d read", max(n, 0), len(prog))
	}
	return prog, nil
}
