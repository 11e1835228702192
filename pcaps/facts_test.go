// Package pcaps_test checks that the project's captures and their facts
// files still belong together: tests elsewhere read frame numbers, keys and
// expected values from the facts, so a capture regenerated without its facts
// (or edited by hand) must fail here rather than mislead them.
package pcaps_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/tschsensor/tschsensor/internal/testpcap"
)

// facts is the part of a generator's <name>.json this test checks.
type facts struct {
	Pcap       string   `json:"pcap"`
	Name       string   `json:"name"` // derived captures name the pcap this way
	PcapSHA256 string   `json:"pcap_sha256"`
	Problems   []string `json:"problems"`
	Keytab     *string  `json:"keytab"`
	Client     struct {
		User  string `json:"user"`
		Realm string `json:"realm"`
	} `json:"client"`
	Realm *string `json:"realm"`
	User  string  `json:"user"`
	Calls []struct {
		Op       string `json:"op"`
		Request  []int  `json:"request_frames"`
		Response []int  `json:"response_frames"`
		Fault    []int  `json:"fault_frames"`
	} `json:"calls"`
	Setup []struct {
		Frame int `json:"frame"`
	} `json:"rpc_setup_frames"`
	APReq []struct {
		Frame int    `json:"frame"`
		CName string `json:"cname"`
		Realm string `json:"crealm"`
	} `json:"kerberos_ap_req"`
	Kerberos *struct {
		Frame int    `json:"ap_req_frame"`
		CName string `json:"cname"`
		Realm string `json:"crealm"`
	} `json:"kerberos"`
	Transform []int `json:"transform_frames"`
}

// tcpPayloadFrames returns, per frame number (1-based), whether the frame
// carries TCP payload, and the number of frames.
func tcpPayloadFrames(t *testing.T, path string) map[int]bool {
	t.Helper()
	pkts, link, err := testpcap.Read(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[int]bool{}
	for i, pk := range pkts {
		p := gopacket.NewPacket(pk.Data, link, gopacket.NoCopy)
		tcp, _ := p.Layer(layers.LayerTypeTCP).(*layers.TCP)
		out[i+1] = tcp != nil && len(tcp.Payload) > 0
	}
	return out
}

func TestFactsMatchCaptures(t *testing.T) {
	names, _ := filepath.Glob("*.json")
	checked := 0
	for _, name := range names {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		var f facts
		if err := json.Unmarshal(b, &f); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if f.PcapSHA256 == "" {
			t.Errorf("%s: no pcap_sha256", name)
			continue
		}
		if f.Pcap == "" {
			f.Pcap = f.Name + ".pcap"
		}
		checked++
		t.Run(strings.TrimSuffix(name, ".json"), func(t *testing.T) {
			raw, err := os.ReadFile(f.Pcap)
			if err != nil {
				t.Fatal(err)
			}
			sum := sha256.Sum256(raw)
			if hex.EncodeToString(sum[:]) != f.PcapSHA256 {
				t.Fatalf("%s changed since its facts were written (regenerate both)", f.Pcap)
			}
			if len(f.Problems) != 0 {
				t.Errorf("the generator recorded problems: %v", f.Problems)
			}
			frames := tcpPayloadFrames(t, f.Pcap)
			want := func(what string, n int) {
				if !frames[n] {
					t.Errorf("%s frame %d: no TCP payload in %s (%d frames)", what, n, f.Pcap, len(frames))
				}
			}
			for _, c := range f.Calls {
				// A call the server faulted has a fault frame instead of a response.
				if len(c.Request) == 0 || len(c.Response) == 0 && len(c.Fault) == 0 {
					t.Errorf("%s: no request or response frame", c.Op)
				}
				for _, n := range append(append(append([]int(nil), c.Request...), c.Response...), c.Fault...) {
					want(c.Op, n)
				}
			}
			for _, s := range f.Setup {
				want("rpc setup", s.Frame)
			}
			for _, n := range f.Transform {
				want("SMB3 transform", n)
			}
			if f.Keytab != nil {
				checkKerberos(t, f, frames)
			}
		})
	}
	if checked == 0 {
		t.Fatal("no facts files in pcaps/")
	}
}

// checkKerberos: the keytab the facts name is an MIT keytab in the
// repository, and every ticket tshark opened with it names the client the
// generator logged in as.
func checkKerberos(t *testing.T, f facts, frames map[int]bool) {
	t.Helper()
	kt, err := os.ReadFile(filepath.Join("..", *f.Keytab))
	if err != nil {
		t.Fatalf("keytab: %v", err)
	}
	if !bytes.HasPrefix(kt, []byte{0x05, 0x02}) {
		t.Errorf("%s is not an MIT keytab (version 0x0502)", *f.Keytab)
	}
	user, realm := f.Client.User, f.Client.Realm
	if f.Kerberos != nil { // SMB3 facts
		user, realm = f.User, *f.Realm
		if f.Kerberos.CName != user || f.Kerberos.Realm != realm {
			t.Errorf("ticket opened for %s@%s, client %s@%s", f.Kerberos.CName, f.Kerberos.Realm, user, realm)
		}
		if !frames[f.Kerberos.Frame] {
			t.Errorf("AP-REQ frame %d has no TCP payload", f.Kerberos.Frame)
		}
		return
	}
	if len(f.APReq) == 0 {
		t.Error("no AP-REQ in the facts")
	}
	for _, a := range f.APReq {
		if a.CName != user || a.Realm != realm || user == "" {
			t.Errorf("AP-REQ frame %d: ticket for %s@%s, client %s@%s", a.Frame, a.CName, a.Realm, user, realm)
		}
		if !frames[a.Frame] {
			t.Errorf("AP-REQ frame %d has no TCP payload", a.Frame)
		}
	}
}
