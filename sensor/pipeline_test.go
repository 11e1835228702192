package sensor

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/tschsensor/tschsensor/detect"
	"github.com/tschsensor/tschsensor/sensor/output"
	"github.com/tschsensor/tschsensor/sensor/source"
)

// plSharedDir is the shared test corpus beside the checkout (see
// ../shared/README.md); tests that need it skip when it is absent.
const plSharedDir = "../../shared"

// plPositives are the shared captures with expected task-creation events.
var plPositives = []string{
	"A_hangchuanin__atexec.pcapng",
	"A_otrf__schtask_create_2020-12-1907003032.pcapng",
	"A_suricata-verify__dcerpc-smb-ctxid.pcap",
	"atexec-sealed-dev.pcap",
}

func plShared(t testing.TB, name string) string {
	t.Helper()
	p := filepath.Join(plSharedDir, "pcaps", name)
	if strings.HasPrefix(name, "../") {
		p = name // one of the project's captures
	}
	if _, err := os.Stat(p); err != nil {
		t.Skipf("shared corpus not available (%v): run from a checkout with ../shared beside it", err)
	}
	return p
}

// plCaptures lists every capture of the shared corpus, then the project's own.
func plCaptures(t testing.TB) []string {
	t.Helper()
	var files []string
	for _, pat := range []string{filepath.Join(plSharedDir, "pcaps", "*"), "../pcaps/*"} {
		m, _ := filepath.Glob(pat)
		for _, f := range m {
			switch strings.ToLower(filepath.Ext(f)) {
			case ".pcap", ".pcapng", ".cap":
				files = append(files, f)
			}
		}
	}
	if len(files) == 0 {
		t.Skip("no captures: neither ../shared/pcaps nor pcaps/ is present")
	}
	return files
}

// plReplay replays files through sensor.Replay and returns the JSON lines
// it printed.
func plReplay(t testing.TB, opt Options, files ...string) ([]string, ReplayResult) {
	t.Helper()
	var buf bytes.Buffer
	out := output.NewOutput(output.NewWriterSink(&buf, false))
	res := Replay(context.Background(), ReplayConfig{Options: opt, Detect: detect.Options{Observer: "test"}, Output: out}, files)
	if err := out.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	s := strings.TrimSpace(buf.String())
	if s == "" {
		return nil, res
	}
	return strings.Split(s, "\n"), res
}

// plRecorder keeps what a worker finishes.
type plRecorder struct {
	calls []*detect.Call
	files []*detect.FileOp
}

func (r *plRecorder) Call(c *detect.Call)   { r.calls = append(r.calls, c) }
func (r *plRecorder) File(f *detect.FileOp) { r.files = append(r.files, f) }

// plPacket is one packet of a capture held in memory.
type plPacket struct {
	data []byte
	ci   gopacket.CaptureInfo
	link layers.LinkType
}

// plLoad reads a whole capture into memory (copies: the source reuses its buffer).
func plLoad(t testing.TB, name string) []plPacket {
	t.Helper()
	var pkts []plPacket
	eachPacket(t, name, func(_ int, data []byte, ci gopacket.CaptureInfo, link layers.LinkType) {
		pkts = append(pkts, plPacket{bytes.Clone(data), ci, link})
	})
	return pkts
}

// eachPacket calls fn with every packet of the capture at path in order,
// frame counting from 1. data is valid only during the call: the source
// reuses its buffer.
func eachPacket(t testing.TB, path string, fn func(frame int, data []byte, ci gopacket.CaptureInfo, link layers.LinkType)) {
	t.Helper()
	src, err := source.OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	for frame := 1; ; frame++ {
		data, ci, link, err := src.ReadPacket()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		fn(frame, data, ci, link)
	}
}

// tcpConv builds Ethernet/IPv4/TCP frames of one connection: a handshake,
// data segments with running sequence numbers in either direction, FINs.
type tcpConv struct {
	cli, srv     [4]byte
	cport, sport uint16
	seq          [2]uint32 // next sequence number per direction (0 client, 1 server)
	ts           time.Time
	buf          []byte
}

func newTCPConv(sport uint16) *tcpConv {
	return &tcpConv{cli: [4]byte{10, 0, 0, 1}, srv: [4]byte{10, 0, 0, 2}, cport: 49152, sport: sport,
		seq: [2]uint32{1000, 900000}, ts: time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)}
}

// tcpPSH completes the flags of flowgate.go for test segments.
const tcpPSH = 0x08

// handshake sends c's three-way handshake to w and returns what sends
// its further segments.
func (c *tcpConv) handshake(w *Worker) func(dir int, flags uint8, p []byte) {
	send := func(dir int, flags uint8, p []byte) {
		b, ci := c.frame(dir, flags, p)
		w.Packet(b, ci, layers.LinkTypeEthernet)
	}
	send(0, tcpSYN, nil)
	send(1, tcpSYN|tcpACK, nil)
	send(0, tcpACK, nil)
	return send
}

// frame returns one frame from direction dir (it reuses its buffer).
func (c *tcpConv) frame(dir int, flags uint8, payload []byte) ([]byte, gopacket.CaptureInfo) {
	n := 14 + 20 + 20 + len(payload)
	b := append(c.buf[:0], make([]byte, n)...)
	c.buf = b
	src, dst, sp, dp := c.cli, c.srv, c.cport, c.sport
	if dir == 1 {
		src, dst, sp, dp = c.srv, c.cli, c.sport, c.cport
	}
	copy(b[0:6], []byte{2, 0, 0, 0, 0, byte(2 - dir)})
	copy(b[6:12], []byte{2, 0, 0, 0, 0, byte(1 + dir)})
	binary.BigEndian.PutUint16(b[12:], 0x0800)
	ip := b[14:]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(20+20+len(payload)))
	ip[6] = 0x40 // don't fragment
	ip[8] = 64
	ip[9] = 6
	copy(ip[12:16], src[:])
	copy(ip[16:20], dst[:])
	tcp := ip[20:]
	binary.BigEndian.PutUint16(tcp[0:], sp)
	binary.BigEndian.PutUint16(tcp[2:], dp)
	binary.BigEndian.PutUint32(tcp[4:], c.seq[dir])
	if flags&tcpACK != 0 {
		binary.BigEndian.PutUint32(tcp[8:], c.seq[1-dir])
	}
	tcp[12] = 5 << 4
	tcp[13] = flags
	binary.BigEndian.PutUint16(tcp[14:], 65535)
	copy(tcp[20:], payload)
	c.seq[dir] += uint32(len(payload))
	if flags&(tcpSYN|tcpFIN) != 0 {
		c.seq[dir]++
	}
	c.ts = c.ts.Add(time.Millisecond)
	return b, gopacket.CaptureInfo{Timestamp: c.ts, CaptureLength: n, Length: n}
}

// plConversation splits fuzz input into records of a 2-byte header (top bit:
// server to client; low 15 bits: length) and data; what does not parse is
// one last client record.
func plConversation(in []byte) (dirs []int, data [][]byte) {
	for len(in) > 0 {
		if len(in) < 2 {
			dirs, data = append(dirs, 0), append(data, in)
			break
		}
		h := binary.BigEndian.Uint16(in)
		n := int(h & 0x7fff)
		if n > len(in)-2 {
			dirs, data = append(dirs, 0), append(data, in[2:])
			break
		}
		dirs, data = append(dirs, int(h>>15)), append(data, in[2:2+n])
		in = in[2+n:]
	}
	return dirs, data
}

// plEncodeConversation is the inverse, for seeds.
func plEncodeConversation(dirs []int, data [][]byte) []byte {
	var out []byte
	for i, d := range data {
		for len(d) > 0 {
			n := min(len(d), 0x7fff)
			out = binary.BigEndian.AppendUint16(out, uint16(dirs[i]<<15|n))
			out = append(out, d[:n]...)
			d = d[n:]
		}
	}
	return out
}

// plSeedConversations takes the TCP payloads of a shared capture's
// connections to port 445 or 135, in capture order, as fuzz seeds.
func plSeedConversations(f *testing.F, name string, port uint16) {
	p := filepath.Join(plSharedDir, "pcaps", name)
	if strings.HasPrefix(name, "../") {
		p = name // one of the project's captures
	}
	if _, err := os.Stat(p); err != nil {
		return
	}
	dirs, data := plTCPPayloads(f, p, port)
	if len(data) > 0 {
		f.Add(plEncodeConversation(dirs, data), uint8(0))
		f.Add(plEncodeConversation(dirs, data), uint8(6))
	}
}

// plTCPPayloads returns the non-empty TCP payloads to or from port in the
// capture at path, in capture order, with their direction (0 towards port, 1
// from it); the shape plEncodeConversation takes.
func plTCPPayloads(tb testing.TB, path string, port uint16) (dirs []int, data [][]byte) {
	var fr frame
	var tcp layers.TCP
	for _, pk := range plLoad(tb, path) {
		if decodeFrame(pk.data, pk.link, &fr) != decTCP || fr.fragment {
			continue
		}
		if tcp.DecodeFromBytes(fr.tcp, gopacket.NilDecodeFeedback) != nil || len(tcp.Payload) == 0 {
			continue
		}
		switch {
		case uint16(tcp.DstPort) == port:
			dirs = append(dirs, 0)
		case uint16(tcp.SrcPort) == port:
			dirs = append(dirs, 1)
		default:
			continue
		}
		data = append(data, bytes.Clone(tcp.Payload))
	}
	return dirs, data
}

// plFuzzMaxInput bounds one FuzzWorker input (the seeds' first messages:
// negotiate, session setup, tree connect, create, bind fit in it).
const plFuzzMaxInput = 4096

// FuzzWorker feeds arbitrary conversations to a worker as Ethernet/IPv4/TCP
// frames to port 445, 135 and a dynamic one, cut into segments of 1 to 64 bytes (or
// whole): the worker must neither panic nor lose count of packets.
func FuzzWorker(f *testing.F) {
	plSeedConversations(f, "A_suricata-verify__dcerpc-smb-ctxid.pcap", 445)
	plSeedConversations(f, "A_hangchuanin__atexec.pcapng", 445)
	plSeedConversations(f, "B_scapy__dcerpc_privacy_ntlm.pcapng", 135)
	// SMB1 WRITE_ANDX of a .job file into ADMIN$\Tasks (kept and parsed).
	plSeedConversations(f, "../pcaps/impacket-legacy-job-smb1.pcap", 445)
	f.Add([]byte("\x00\x08\x00\x00\x00\x04\xfeSMB"), uint8(1))
	f.Fuzz(func(t *testing.T, in []byte, split uint8) {
		// Bound the work per input: under -fuzz every packet runs through
		// instrumented reassembly, and 1-byte segments of a long input
		// would cost seconds per execution.
		if len(in) > plFuzzMaxInput {
			in = in[:plFuzzMaxInput]
		}
		dirs, data := plConversation(in)
		// 49700: no well-known port, the flow table decides from content.
		for _, port := range []uint16{445, 135, 49700} {
			rec := &plRecorder{}
			// A panic caught at the worker boundary is still a bug: fail.
			// Few calls per channel, so that inputs this short reach the
			// eviction and flood-summary paths too.
			w := NewWorker(Options{MaxCalls: 4, PanicHook: func(r any) { panic(r) }}, rec, nil)
			w.SetFile("fuzz")
			frames := plDrive(w, port, dirs, data, split)
			w.Flush()
			if st := w.Stats(); st.Packets != uint64(frames) || st.TCPPackets != uint64(frames) {
				t.Fatalf("port %d: %d frames in, stats say %d packets, %d TCP", port, frames, st.Packets, st.TCPPackets)
			}
		}
	})
}

// plDrive sends a conversation to w as one Ethernet/IPv4/TCP connection to
// port: handshake, each message cut into segments of split%64+1 bytes (1460
// when split >= 64), FINs. It returns the number of frames sent.
func plDrive(w *Worker, port uint16, dirs []int, data [][]byte, split uint8) int {
	c := newTCPConv(port)
	frames := 0
	send := func(dir int, flags uint8, p []byte) {
		b, ci := c.frame(dir, flags, p)
		w.Packet(b, ci, layers.LinkTypeEthernet)
		frames++
	}
	send(0, tcpSYN, nil)
	send(1, tcpSYN|tcpACK, nil)
	send(0, tcpACK, nil)
	seg := int(split%64) + 1
	if split >= 64 {
		seg = 1460
	}
	for i, d := range data {
		for len(d) > 0 {
			n := min(seg, len(d))
			send(dirs[i], tcpPSH|tcpACK, d[:n])
			d = d[n:]
		}
	}
	send(0, tcpFIN|tcpACK, nil)
	send(1, tcpFIN|tcpACK, nil)
	return frames
}

// TestReplayCaptures replays every capture: no read error other than a cut
// tail, and the same output on a second run.
func TestReplayCaptures(t *testing.T) {
	for _, f := range plCaptures(t) {
		t.Run(filepath.Base(f), func(t *testing.T) {
			a, res := plReplay(t, Options{}, f)
			for _, err := range res.Errors {
				if !errors.Is(err, source.ErrCutShort) {
					t.Errorf("replay: %v", err)
				}
			}
			if res.Stats.Packets == 0 {
				t.Error("no packets read")
			}
			b, _ := plReplay(t, Options{}, f)
			if strings.Join(a, "\n") != strings.Join(b, "\n") {
				t.Error("two replays of the same capture differ")
			}
		})
	}
}
