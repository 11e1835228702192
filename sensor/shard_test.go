package sensor

import (
	"bytes"
	"context"
	"encoding/binary"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/tschsensor/tschsensor/detect"
	"github.com/tschsensor/tschsensor/sensor/output"
)

// replayWorkers replays files with n workers and returns stdout's bytes.
func replayWorkers(t *testing.T, n int, files ...string) ([]byte, ReplayResult) {
	t.Helper()
	var buf bytes.Buffer
	out := output.NewOutput(output.NewWriterSink(&buf, false))
	res := Replay(context.Background(), ReplayConfig{Detect: detect.Options{Observer: "shard"}, Output: out, Workers: n,
		Options: Options{PanicHook: func(p any) { t.Errorf("panic: %v", p) }}}, files)
	if err := out.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), res
}

// TestReplayWorkersSameOutput replays every capture with 1, 2 and 4
// workers: events (ids, order, frames) and counters must not change.
func TestReplayWorkersSameOutput(t *testing.T) {
	files, _ := filepath.Glob("../pcaps/*.pcap")
	shared, _ := filepath.Glob("../../shared/pcaps/*.pcap*")
	if len(shared) == 0 {
		t.Log("../shared/pcaps absent: project captures only")
	}
	files = append(files, shared...)
	if len(files) == 0 {
		t.Fatal("no captures")
	}
	events := 0
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			want, res1 := replayWorkers(t, 1, f)
			events += bytes.Count(want, []byte("\n"))
			for _, n := range []int{2, 4} {
				got, res := replayWorkers(t, n, f)
				if !bytes.Equal(got, want) {
					t.Errorf("%d workers: output differs from one worker's:\n%s\nwant:\n%s", n, got, want)
				}
				if len(res.Errors) != len(res1.Errors) {
					t.Errorf("%d workers: errors %v, one worker %v", n, res.Errors, res1.Errors)
				}
				s, s1 := res.Stats, res1.Stats
				if s.Packets != s1.Packets || s.Bytes != s1.Bytes || s.TCPPackets != s1.TCPPackets || s.Connections != s1.Connections ||
					s.TschCalls != s1.TschCalls || s.FileOps != s1.FileOps || !s.FirstTime.Equal(s1.FirstTime) || !s.LastTime.Equal(s1.LastTime) {
					t.Errorf("%d workers: counters %+v, one worker %+v", n, s, s1)
				}
				if !reflect.DeepEqual(s.Anomalies, s1.Anomalies) {
					t.Errorf("%d workers: anomalies %v, one worker %v", n, s.Anomalies, s1.Anomalies)
				}
			}
		})
	}
	if events == 0 {
		t.Error("no capture produced an event: the comparison proves nothing")
	}
}

// TestReplayWorkersSeveralFiles replays all project captures in one run:
// frame numbers restart per file and records name their file.
func TestReplayWorkersSeveralFiles(t *testing.T) {
	files, _ := filepath.Glob("../pcaps/*.pcap")
	want, _ := replayWorkers(t, 1, files...)
	got, _ := replayWorkers(t, 3, files...)
	if !bytes.Equal(got, want) {
		t.Errorf("3 workers differ from one on %d files", len(files))
	}
}

// TestShardSpreadsFlows checks that the dispatcher uses every worker and
// keeps both directions of a connection together.
func TestShardSpreadsFlows(t *testing.T) {
	files, _ := filepath.Glob("../../shared/pcaps/*.pcap")
	if len(files) == 0 {
		t.Skip("../shared/pcaps absent")
	}
	_, res := replayWorkers(t, 1, files...)
	d := newShardDispatcher(Options{}, 2)
	m := newShardMerger(NewResolver(directRecorder{detect.New(detect.Options{}, func(*detect.Event) {})}), func(time.Time) {}, 2)
	d.start()
	done := make(chan struct{})
	go func() { defer close(done); m.run(d.workers) }()
	for _, f := range files {
		if err := replayFile(context.Background(), d, f, nil); err != nil {
			t.Fatal(err)
		}
	}
	d.finish()
	<-done
	var conns uint64
	for i, sw := range d.workers {
		s := sw.w.Stats()
		if s.TCPPackets == 0 {
			t.Errorf("worker %d got no TCP packet", i)
		}
		conns += s.Connections
	}
	// A connection split across workers would be counted on both.
	if conns != res.Stats.Connections {
		t.Errorf("workers saw %d connections, one worker %d", conns, res.Stats.Connections)
	}
}

// TestShardFragments: every fragment of an IPv4 datagram goes to the worker
// of its flow when the first fragment leads, and to one worker whatever the
// order; both directions of a connection meet on one worker.
func TestShardFragments(t *testing.T) {
	ip := func(src, dst byte, id uint16, flags layers.IPv4Flag, off uint16, payload []byte) []byte {
		eth := &layers.Ethernet{SrcMAC: []byte{2, 0, 0, 0, 0, src}, DstMAC: []byte{2, 0, 0, 0, 0, dst}, EthernetType: layers.EthernetTypeIPv4}
		v4 := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, Id: id, Flags: flags, FragOffset: off,
			SrcIP: []byte{10, 0, 0, src}, DstIP: []byte{10, 0, 0, dst}}
		buf := gopacket.NewSerializeBuffer()
		if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
			eth, v4, gopacket.Payload(payload)); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	// A TCP header (ports 49152 → 445) and data, cut in two fragments.
	seg := make([]byte, 48)
	binary.BigEndian.PutUint16(seg, 49152)
	binary.BigEndian.PutUint16(seg[2:], 445)
	seg[12] = 5 << 4
	first := ip(1, 2, 7, layers.IPv4MoreFragments, 0, seg[:24])
	second := ip(1, 2, 7, 0, 3, seg[24:])
	for n := 2; n <= 8; n++ {
		d := newShardDispatcher(Options{}, n)
		flows := 0
		for src := byte(1); src < 40; src++ {
			fwd := make([]byte, 20)
			binary.BigEndian.PutUint16(fwd, 49152)
			binary.BigEndian.PutUint16(fwd[2:], 445)
			fwd[12] = 5 << 4
			rev := append([]byte(nil), fwd...)
			binary.BigEndian.PutUint16(rev, 445)
			binary.BigEndian.PutUint16(rev[2:], 49152)
			a := d.shard(ip(src, 200, 1, 0, 0, fwd), layers.LinkTypeEthernet)
			if b := d.shard(ip(200, src, 1, 0, 0, rev), layers.LinkTypeEthernet); a != b {
				t.Fatalf("%d workers: directions of a flow on workers %d and %d", n, a, b)
			}
			flows |= 1 << a
		}
		if flows != 1<<n-1 {
			t.Errorf("%d workers: 39 flows used workers %b only", n, flows)
		}
		whole := make([]byte, 20)
		copy(whole, seg[:20])
		flow := d.shard(ip(1, 2, 8, 0, 0, whole), layers.LinkTypeEthernet)
		if a, b := d.shard(first, layers.LinkTypeEthernet), d.shard(second, layers.LinkTypeEthernet); a != flow || b != flow {
			t.Errorf("%d workers: fragments on %d and %d, their flow on %d", n, a, b, flow)
		}
		// Last fragment first (another datagram id): both fragments still meet.
		late := ip(1, 2, 9, 0, 3, seg[24:])
		early := ip(1, 2, 9, layers.IPv4MoreFragments, 0, seg[:24])
		if a, b := d.shard(late, layers.LinkTypeEthernet), d.shard(early, layers.LinkTypeEthernet); a != b {
			t.Errorf("%d workers: reordered fragments on %d and %d", n, a, b)
		}
	}
}

// TestReplayWorkersSameOutputOpened does the same with the secrets of the
// sealed project captures (passwords, keytabs): keys learned on one
// connection and used on others must not depend on the number of workers.
func TestReplayWorkersSameOutputOpened(t *testing.T) {
	caps := projectSealedCaptures(t)
	for _, f := range caps {
		t.Run(f.name, func(t *testing.T) {
			opt, _ := f.secret(t)
			run := func(workers int) []byte {
				var buf bytes.Buffer
				out := output.NewOutput(output.NewWriterSink(&buf, false))
				Replay(context.Background(), ReplayConfig{Options: opt, Detect: detect.Options{Observer: "shard"}, Output: out, Workers: workers}, []string{f.pcap})
				if err := out.Close(context.Background()); err != nil {
					t.Fatal(err)
				}
				return buf.Bytes()
			}
			want := run(1)
			if !bytes.Contains(want, []byte(`"decrypted":true`)) {
				t.Fatalf("nothing opened with one worker: the comparison proves little")
			}
			if got := run(3); !bytes.Equal(got, want) {
				t.Errorf("3 workers: output differs from one worker's")
			}
		})
	}
	if len(caps) == 0 {
		t.Fatal("no sealed capture with a secret in pcaps/")
	}
}
