package dissect

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"reflect"
	"testing"

	"github.com/oiweiwei/go-msrpc/midl/uuid"
	"github.com/oiweiwei/go-msrpc/msrpc/dcetypes"
	"github.com/oiweiwei/go-msrpc/msrpc/dtyp"
	epmv3 "github.com/oiweiwei/go-msrpc/msrpc/epm/epm/v3"
)

// ept_map of ITaskSchedulerService from A_otrf__schtask_create_2020-12-1907003032.pcapng,
// NDR64 (presentation context 1), drep 10000000: request frame 1365, response
// frame 1367 naming TCP port 49671 on 172.18.39.6.
const (
	otrfEPMMapReq = "01000000000000000000000000000000000000000000000002000000000000004b000000000000004b0000000500" +
		"13000d4959d386c9834440b424db363231fd0c01000200000013000d045d888aeb1cc9119fe808002b10486002000200" +
		"000001000b020000000100070200008701000904000000000000000000000000000000000000000000000000000004000000"
	otrfEPMMapResp = "000000000000000000000000000000000000000001000000040000000000000000000000000000000100000000000000" +
		"03000000000000004b000000000000004b000000050013000d4959d386c9834440b424db363231fd0c01000200000013" +
		"000d045d888aeb1cc9119fe808002b10486002000200000001000b020000000100070200c2070100090400ac1227060000000000"
)

func testTower(t testing.TB, iface string, major, minor uint16, floors ...*dcetypes.Floor) *dcetypes.Tower {
	t.Helper()
	u, err := uuid.Parse(iface)
	if err != nil {
		t.Fatal(err)
	}
	ndrSyntax, _ := uuid.Parse("8a885d04-1ceb-11c9-9fe8-08002b104860")
	minorB := binary.LittleEndian.AppendUint16(nil, minor)
	all := append([]*dcetypes.Floor{
		{Protocol: towerProtoUUID, UUID: u, VersionMajor: major, Data: minorB},
		{Protocol: towerProtoUUID, UUID: ndrSyntax, VersionMajor: 2, Data: []byte{0, 0}},
		{Protocol: towerProtoRPCCO, Data: []byte{0, 0}},
	}, floors...)
	return dcetypes.FloorsToTower(all)
}

func tcpFloors(port uint16, ip [4]byte) []*dcetypes.Floor {
	return []*dcetypes.Floor{
		{Protocol: towerProtoTCP, Data: binary.BigEndian.AppendUint16(nil, port)},
		{Protocol: towerProtoIP, Data: ip[:]},
	}
}

func TestDecodeEPMMapCapture(t *testing.T) {
	eps, err := DecodeEPMMap(mustHex(t, otrfEPMMapReq), mustHex(t, otrfEPMMapResp), SyntaxNDR64, drepLE)
	if err != nil {
		t.Fatal(err)
	}
	want := []Endpoint{{Interface: uuidITaskSchedulerService, Major: 1, Protocol: "ncacn_ip_tcp", Port: 49671,
		Addr: netip.MustParseAddr("172.18.39.6")}}
	if !reflect.DeepEqual(eps, want) {
		t.Errorf("got %+v\nwant %+v", eps, want)
	}
	if IfaceByUUID(eps[0].Interface, eps[0].Major) != IfaceITaskSchedulerService {
		t.Error("endpoint interface not recognised")
	}
}

func TestDecodeEPMMapRoundTrip(t *testing.T) {
	reqTower := testTower(t, uuidITaskSchedulerService, 1, 0, tcpFloors(0, [4]byte{})...)
	req := &epmv3.MapRequest{Object: &dtyp.GUID{Data4: make([]byte, 8)}, MapTower: reqTower,
		EntryHandle: &epmv3.LookupHandle{UUID: &dtyp.GUID{Data4: make([]byte, 8)}}, MaxTowers: 4}
	towers := []*dcetypes.Tower{
		testTower(t, uuidITaskSchedulerService, 1, 0, tcpFloors(49671, [4]byte{10, 1, 1, 130})...),
		testTower(t, uuidATSVC, 1, 0,
			&dcetypes.Floor{Protocol: towerProtoPipe, Data: []byte(`\PIPE\atsvc` + "\x00")},
			&dcetypes.Floor{Protocol: towerProtoNetBIOS, Data: []byte(`\\SRV01` + "\x00")}),
		testTower(t, uuidSASec, 1, 0, &dcetypes.Floor{Protocol: towerProtoLRPC, Data: []byte("LRPC-abc\x00")}),
		// A tower without interface floors takes the interface asked for.
		dcetypes.FloorsToTower([]*dcetypes.Floor{{Protocol: towerProtoRPCCO, Data: []byte{0, 0}},
			{Protocol: towerProtoHTTP, Data: []byte{0x01, 0x93}}}),
	}
	resp := &epmv3.MapResponse{MaxTowers: 4, EntryHandle: req.EntryHandle, TowersLength: uint32(len(towers)), Towers: towers}
	want := []Endpoint{
		{Interface: uuidITaskSchedulerService, Major: 1, Protocol: "ncacn_ip_tcp", Port: 49671, Addr: netip.MustParseAddr("10.1.1.130")},
		{Interface: uuidATSVC, Major: 1, Protocol: "ncacn_np", Pipe: `\PIPE\atsvc`, Host: `\\SRV01`},
		{Interface: uuidSASec, Major: 1, Protocol: "ncalrpc", Pipe: "LRPC-abc"},
		{Interface: uuidITaskSchedulerService, Major: 1, Protocol: "ncacn_http", Port: 403},
	}
	for _, e := range encodings {
		t.Run(e.name, func(t *testing.T) {
			eps, err := DecodeEPMMap(marshalStub(t, e, req), marshalStub(t, e, resp), e.syn, e.drep)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(eps, want) {
				t.Errorf("got %+v\nwant %+v", eps, want)
			}
		})
	}
}

func TestDecodeEPMLookupRoundTrip(t *testing.T) {
	handle := &epmv3.LookupHandle{UUID: &dtyp.GUID{Data1: 1, Data4: make([]byte, 8)}}
	req := &epmv3.LookupRequest{InquiryType: 0, Object: &dtyp.GUID{Data4: make([]byte, 8)},
		InterfaceID: &dcetypes.InterfaceID{UUID: &dtyp.GUID{Data4: make([]byte, 8)}}, EntryHandle: handle, MaxEntries: 500}
	entries := []*epmv3.Entry{
		{Object: &dtyp.GUID{Data4: make([]byte, 8)}, Annotation: "",
			Tower: testTower(t, uuidATSVC, 1, 0, &dcetypes.Floor{Protocol: towerProtoPipe, Data: []byte(`\PIPE\atsvc` + "\x00")})},
		{Object: &dtyp.GUID{Data4: make([]byte, 8)}, Annotation: "Task Scheduler",
			Tower: testTower(t, uuidITaskSchedulerService, 1, 0, tcpFloors(49671, [4]byte{192, 168, 1, 5})...)},
	}
	resp := &epmv3.LookupResponse{MaxEntries: 500, EntryHandle: handle, EntriesLength: 2, Entries: entries}
	want := []Endpoint{
		{Interface: uuidATSVC, Major: 1, Protocol: "ncacn_np", Pipe: `\PIPE\atsvc`},
		{Interface: uuidITaskSchedulerService, Major: 1, Protocol: "ncacn_ip_tcp", Port: 49671,
			Addr: netip.MustParseAddr("192.168.1.5"), Annotation: "Task Scheduler"},
	}
	for _, e := range encodings {
		t.Run(e.name, func(t *testing.T) {
			eps, err := DecodeEPMLookup(marshalStub(t, e, req), marshalStub(t, e, resp), e.syn, e.drep)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(eps, want) {
				t.Errorf("got %+v\nwant %+v", eps, want)
			}
		})
	}
}

func TestParseTowerErrors(t *testing.T) {
	good := testTower(t, uuidATSVC, 1, 0, tcpFloors(135, [4]byte{1, 2, 3, 4})...).TowerOctetString
	for n := 0; n < len(good); n++ {
		if _, err := ParseTower(good[:n]); !errors.Is(err, ErrTruncated) {
			t.Fatalf("prefix %d: %v, want ErrTruncated", n, err)
		}
	}
	if _, err := ParseTower([]byte{0xff, 0xff}); !errors.Is(err, ErrLimit) {
		t.Errorf("65535 floors: %v", err)
	}
	if _, err := ParseTower([]byte{1, 0, 0, 0, 0, 0}); !errors.Is(err, ErrMalformed) {
		t.Errorf("empty floor: %v", err)
	}
	// A bad tower among good ones is skipped and reported.
	resp := &epmv3.MapResponse{MaxTowers: 2, EntryHandle: &epmv3.LookupHandle{UUID: &dtyp.GUID{Data4: make([]byte, 8)}},
		TowersLength: 2, Towers: []*dcetypes.Tower{{TowerOctetString: good[:10]}, {TowerOctetString: good}}}
	eps, err := DecodeEPMMap(nil, marshalStub(t, encodings[0], resp), SyntaxNDR, drepLE)
	if !errors.Is(err, ErrTruncated) || len(eps) != 1 || eps[0].Port != 135 {
		t.Errorf("got %+v, %v", eps, err)
	}
	if _, err := DecodeEPMMap(nil, []byte{1, 2, 3}, SyntaxNDR, drepLE); err == nil {
		t.Error("3-byte response decoded")
	}
}

func FuzzEPM(f *testing.F) {
	f.Add(mustHex(f, otrfEPMMapReq), mustHex(f, otrfEPMMapResp), uint8(SyntaxNDR64), false)
	tower := testTower(f, uuidATSVC, 1, 0, tcpFloors(135, [4]byte{1, 2, 3, 4})...)
	for _, e := range encodings {
		resp := &epmv3.MapResponse{MaxTowers: 1, EntryHandle: &epmv3.LookupHandle{UUID: &dtyp.GUID{Data4: make([]byte, 8)}},
			TowersLength: 1, Towers: []*dcetypes.Tower{tower}}
		f.Add([]byte(nil), marshalStub(f, e, resp), uint8(e.syn), false)
		lresp := &epmv3.LookupResponse{MaxEntries: 1, EntryHandle: resp.EntryHandle, EntriesLength: 1,
			Entries: []*epmv3.Entry{{Object: &dtyp.GUID{Data4: make([]byte, 8)}, Annotation: "x", Tower: tower}}}
		f.Add([]byte(nil), marshalStub(f, e, lresp), uint8(e.syn), true)
	}
	f.Fuzz(func(t *testing.T, req, resp []byte, syn uint8, lookup bool) {
		decode := DecodeEPMMap
		if lookup {
			decode = DecodeEPMLookup
		}
		eps, err := decode(req, resp, Syntax(syn%3), drepLE)
		if len(eps) > maxEPMEndpoints {
			t.Fatalf("%d endpoints", len(eps))
		}
		if err != nil {
			var de *Error
			if !errors.As(err, &de) {
				t.Fatalf("error %v is not an *Error", err)
			}
		}
		// ParseTower on the raw bytes walks floors directly: what it returns
		// comes from the input.
		if ep, err := ParseTower(resp); err == nil && len(ep.Pipe)+len(ep.Host) > len(resp) {
			t.Fatalf("tower of %d bytes gave %d bytes of names", len(resp), len(ep.Pipe)+len(ep.Host))
		}
	})
}
