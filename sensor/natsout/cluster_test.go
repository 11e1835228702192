package natsout

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TestNATSSinkClusterLeaderKilled runs a three-node JetStream cluster on
// loopback (three nats-server processes), an R3 stream, and two sensors
// publishing into it. The stream leader is killed (SIGKILL) half-way:
// every record of both sensors is in the stream exactly once.
func TestNATSSinkClusterLeaderKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("three nats-server processes; skipped with -short")
	}
	nodes, stream := startCluster(t)
	urls := []string{nodes["n1"].url, nodes["n2"].url, nodes["n3"].url}

	var sensors []publisher
	for _, id := range []string{"sensor-a", "sensor-b"} {
		o := testOptions(t, urls...)
		o.SensorID, o.Replicas, o.AckTimeout = id, 3, time.Minute
		s, err := NewNATSSink(context.Background(), o, nil)
		if err != nil {
			t.Fatal(err)
		}
		var recs []Record
		for _, r := range testRecords(id, 0, 4000) {
			if r.ID != "" { // metrics carry no id: JetStream cannot de-duplicate them
				recs = append(recs, r)
			}
		}
		sensors = append(sensors, publisher{s, recs})
	}
	publish := func(from, to float64) {
		var wg sync.WaitGroup
		for _, sn := range sensors {
			wg.Add(1)
			go func() {
				defer wg.Done()
				n := len(sn.recs)
				for _, r := range sn.recs[int(from*float64(n)):int(to*float64(n))] {
					if err := sn.s.Publish(r); err != nil {
						t.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
	}
	publish(0, 0.5)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	info, err := stream.Info(ctx)
	cancel()
	if err != nil || info.Cluster == nil || nodes[info.Cluster.Leader] == nil {
		t.Fatalf("stream leader: %v %+v", err, info)
	}
	leader := info.Cluster.Leader
	nodes[leader].kill()
	t.Logf("killed stream leader %s", leader)
	publish(0.5, 1)
	for _, sn := range sensors {
		if err := sn.s.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
		st := sn.s.Stats()
		t.Logf("%s: %+v", sn.s.o.SensorID, st)
		if st.Dropped != 0 || st.SpoolRecords != 0 || st.Acked != uint64(len(sn.recs)) {
			t.Errorf("%s: %+v", sn.s.o.SensorID, st)
		}
	}

	var survivors []string
	for name, p := range nodes {
		if name != leader {
			survivors = append(survivors, p.url)
		}
	}
	msgs := readClusterStream(t, survivors, DefaultStream, total(sensors))
	seen := map[string]int{}
	for _, m := range msgs {
		seen[m.sensor+"/"+m.id]++
	}
	for _, sn := range sensors {
		for _, r := range sn.recs {
			if n := seen[sn.s.o.SensorID+"/"+r.ID]; n != 1 {
				t.Errorf("%s %s stored %d times", sn.s.o.SensorID, r.ID, n)
			}
		}
	}
	if n := total(sensors); len(msgs) != n {
		t.Errorf("stream holds %d messages, the sensors published %d", len(msgs), n)
	}
}

// readClusterStream reads every message of the stream from the surviving
// nodes. Right after a leader loss the stream and consumer leaders may
// still be moving ("no responders"), so a failed read is tried again,
// within a bound. want is only a hint for the fetch size.
func readClusterStream(t *testing.T, urls []string, stream string, want int) []storedMsg {
	t.Helper()
	var msgs []storedMsg
	var lastErr error
	waitFor(t, "a full read of the stream from the survivors", func() bool {
		msgs, lastErr = tryReadStream(strings.Join(urls, ","), stream, want)
		if lastErr != nil {
			time.Sleep(100 * time.Millisecond)
		}
		return lastErr == nil
	})
	return msgs
}

func tryReadStream(url, stream string, want int) ([]storedMsg, error) {
	nc, err := nats.Connect(url)
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, stream)
	if err != nil {
		return nil, err
	}
	n := int(st.CachedInfo().State.Msgs)
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return nil, err
	}
	var out []storedMsg
	for len(out) < n {
		batch, err := cons.Fetch(min(n-len(out), max(want, 1000)), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return nil, err
		}
		got := 0
		for m := range batch.Messages() {
			got++
			h := m.Headers()
			out = append(out, storedMsg{subject: m.Subject(), id: h.Get(HeaderMsgID), sensor: h.Get(HeaderSensor), kind: h.Get(HeaderKind), data: m.Data()})
		}
		if batch.Error() != nil {
			return nil, batch.Error()
		}
		if got == 0 {
			return nil, fmt.Errorf("stream says %d messages, read %d", n, len(out))
		}
	}
	return out, nil
}

type publisher struct {
	s    *NATSSink
	recs []Record
}

func total(sensors []publisher) int {
	n := 0
	for _, sn := range sensors {
		n += len(sn.recs)
	}
	return n
}

// startCluster runs three clustered JetStream nats-server processes on
// loopback and creates the R3 stream on them.
func startCluster(t testing.TB) (map[string]*serverProc, jetstream.Stream) {
	t.Helper()
	bin := buildNATSServer(t)
	node := func(name, routes string) *serverProc {
		return startServerConf(t, bin, name, fmt.Sprintf(`listen: "127.0.0.1:-1"
jetstream { store_dir: %q }
cluster { name: tsch, listen: "127.0.0.1:-1", routes: [%s] }
`, t.TempDir(), routes))
	}
	// A clustered JetStream server must have a route configured, and the
	// others' ports are not known before they start: the first node gets
	// one to port 1, where nothing ever listens; the others route to it and
	// gossip completes the mesh.
	n1 := node("n1", `"nats://127.0.0.1:1"`)
	n2 := node("n2", fmt.Sprintf("%q", n1.cluster))
	n3 := node("n3", fmt.Sprintf("%q, %q", n1.cluster, n2.cluster))
	nc, err := nats.Connect(n1.url + "," + n2.url + "," + n3.url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, _ := jetstream.New(nc)
	// The meta group needs all three peers before an R3 stream fits.
	var stream jetstream.Stream
	waitFor(t, "the cluster to take an R3 stream", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		stream, err = js.CreateStream(ctx, jetstream.StreamConfig{Name: DefaultStream, Subjects: []string{DefaultSubjectPrefix + ".>"},
			Storage: jetstream.FileStorage, Replicas: 3, Duplicates: time.Hour})
		return err == nil
	})
	return map[string]*serverProc{"n1": n1, "n2": n2, "n3": n3}, stream
}

// BenchmarkNATSPublishR3 measures records per second from one sensor into
// the R3 stream of a three-node cluster on this machine, every one
// acknowledged, with records of the sensor's mean size (about 2 KB).
func BenchmarkNATSPublishR3(b *testing.B) {
	nodes, _ := startCluster(b)
	o := testOptions(b, nodes["n1"].url, nodes["n2"].url, nodes["n3"].url)
	o.AckTimeout = 5 * time.Minute
	s, err := NewNATSSink(context.Background(), o, nil)
	if err != nil {
		b.Fatal(err)
	}
	tmpl := Record{Kind: "event", Subject: "event.itaskschedulerservice.schrpcregistertask",
		JSON: []byte(`{"pad":"` + strings.Repeat("x", 2100) + `"}`)}
	benchPublish(b, s, tmpl, "records/s")
}
