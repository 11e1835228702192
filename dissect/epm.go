package dissect

// Endpoint mapper (C706 Appendix O, MS-RPCE 2.2.1.2): ept_map and ept_lookup
// answers tell which dynamic TCP port or pipe an interface listens on, so a
// later connection to that port can be recognised as, say, ITaskSchedulerService.

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	epmv3 "github.com/oiweiwei/go-msrpc/msrpc/epm/epm/v3"
)

// Bounds of endpoint decoding.
const (
	maxEPMEndpoints   = 1024 // endpoints kept from one answer
	maxTowerFloors    = 16   // a real tower has 4 or 5
	epmLayer          = "epm"
	towerProtoUUID    = 0x0d
	towerProtoRPCCO   = 0x0b
	towerProtoRPCCL   = 0x0a
	towerProtoTCP     = 0x07
	towerProtoUDP     = 0x08
	towerProtoIP      = 0x09
	towerProtoPipe    = 0x0f
	towerProtoLRPC    = 0x10
	towerProtoNetBIOS = 0x11
	towerProtoHTTP    = 0x1f
)

// Endpoint is one binding the endpoint mapper handed out.
type Endpoint struct {
	Interface  string     // interface UUID, canonical lower-case text
	Major      uint16     // interface major version
	Minor      uint16     // interface minor version
	Protocol   string     // "ncacn_ip_tcp", "ncacn_np", "ncalrpc", "ncadg_ip_udp", "ncacn_http", ...
	Port       uint16     // TCP/UDP/HTTP port
	Pipe       string     // named pipe (ncacn_np) or LRPC port name (ncalrpc)
	Host       string     // NetBIOS name of the server, for ncacn_np
	Addr       netip.Addr // IPv4 address floor; zero if none
	Annotation string     // ept_lookup only
}

// DecodeEPMMap decodes an ept_map call (opnum 3). The request, when given,
// supplies the interface asked for to answers whose towers omit it; an
// empty answer (status EPT_S_NOT_REGISTERED) is no error. Towers that do not
// parse are skipped and reported in the error alongside the good ones.
func DecodeEPMMap(reqStub, respStub []byte, syn Syntax, drep [4]byte) ([]Endpoint, error) {
	var asked Endpoint
	if reqStub != nil {
		var req epmv3.MapRequest
		if err := (ndrDec{epmLayer, reqStub, syn, drep}).unmarshal(&req); err != nil {
			return nil, err
		}
		if req.MapTower != nil {
			asked, _ = ParseTower(req.MapTower.TowerOctetString)
		}
	}
	var resp epmv3.MapResponse
	if err := (ndrDec{epmLayer, respStub, syn, drep}).unmarshal(&resp); err != nil {
		return nil, err
	}
	var eps []Endpoint
	var firstErr error
	for _, t := range resp.Towers {
		if t == nil {
			continue
		}
		if len(eps) == maxEPMEndpoints {
			return eps, errAt(epmLayer, 0, ErrLimit, "more than %d towers", maxEPMEndpoints)
		}
		ep, err := ParseTower(t.TowerOctetString)
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		if ep.Interface == "" {
			ep.Interface, ep.Major, ep.Minor = asked.Interface, asked.Major, asked.Minor
		}
		eps = append(eps, ep)
	}
	return eps, firstErr
}

// DecodeEPMLookup decodes an ept_lookup answer (opnum 2): every registered
// endpoint with its annotation. The request is not needed (each entry's
// tower names its interface); it is accepted, and checked, for symmetry.
func DecodeEPMLookup(reqStub, respStub []byte, syn Syntax, drep [4]byte) ([]Endpoint, error) {
	if reqStub != nil {
		var req epmv3.LookupRequest
		if err := (ndrDec{epmLayer, reqStub, syn, drep}).unmarshal(&req); err != nil {
			return nil, err
		}
	}
	var resp epmv3.LookupResponse
	if err := (ndrDec{epmLayer, respStub, syn, drep}).unmarshal(&resp); err != nil {
		return nil, err
	}
	var eps []Endpoint
	var firstErr error
	for _, e := range resp.Entries {
		if e == nil || e.Tower == nil {
			continue
		}
		if len(eps) == maxEPMEndpoints {
			return eps, errAt(epmLayer, 0, ErrLimit, "more than %d entries", maxEPMEndpoints)
		}
		ep, err := ParseTower(e.Tower.TowerOctetString)
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		ep.Annotation = e.Annotation
		eps = append(eps, ep)
	}
	return eps, firstErr
}

// ParseTower reads a protocol tower's floors (C706 Appendix L): a
// little-endian floor count, then per floor a length-prefixed left-hand side
// (protocol identifier, plus UUID and major version for UUID floors) and a
// length-prefixed right-hand side (minor version, port or address, the
// latter two big-endian). go-msrpc's Tower.Floors ignores short reads, so
// the floors are walked here with a bounds check per field.
func ParseTower(b []byte) (Endpoint, error) {
	var ep Endpoint
	if len(b) < 2 {
		return ep, errAt(epmLayer, 0, ErrTruncated, "tower floor count")
	}
	n := int(binary.LittleEndian.Uint16(b))
	if n > maxTowerFloors {
		return ep, errAt(epmLayer, 0, ErrLimit, "%d tower floors (max %d)", n, maxTowerFloors)
	}
	off := 2
	uuidFloors := 0
	for i := 0; i < n; i++ {
		lhs, next, err := towerField(b, off)
		if err != nil {
			return ep, err
		}
		rhs, next, err := towerField(b, next)
		if err != nil {
			return ep, err
		}
		if len(lhs) == 0 {
			return ep, errAt(epmLayer, off, ErrMalformed, "empty tower floor %d", i)
		}
		off = next
		switch lhs[0] {
		case towerProtoUUID:
			// The first UUID floor is the interface, the second the
			// transfer syntax.
			if uuidFloors == 0 && len(lhs) >= 19 {
				ep.Interface = FormatUUID(lhs[1:17], binary.LittleEndian)
				ep.Major = binary.LittleEndian.Uint16(lhs[17:])
				if len(rhs) >= 2 {
					ep.Minor = binary.LittleEndian.Uint16(rhs)
				}
			}
			uuidFloors++
		case towerProtoRPCCL:
			if ep.Protocol == "" {
				ep.Protocol = "ncadg"
			}
		case towerProtoTCP:
			ep.Protocol, ep.Port = "ncacn_ip_tcp", towerPort(rhs)
		case towerProtoUDP:
			ep.Protocol, ep.Port = "ncadg_ip_udp", towerPort(rhs)
		case towerProtoHTTP:
			ep.Protocol, ep.Port = "ncacn_http", towerPort(rhs)
		case towerProtoPipe:
			ep.Protocol, ep.Pipe = "ncacn_np", towerString(rhs)
		case towerProtoLRPC:
			ep.Protocol, ep.Pipe = "ncalrpc", towerString(rhs)
		case towerProtoNetBIOS:
			ep.Host = towerString(rhs)
		case towerProtoIP:
			if len(rhs) == 4 {
				ep.Addr = netip.AddrFrom4([4]byte(rhs))
			}
		case towerProtoRPCCO:
		default:
			if ep.Protocol == "" {
				ep.Protocol = fmt.Sprintf("protocol_0x%02x", lhs[0])
			}
		}
	}
	return ep, nil
}

func towerField(b []byte, off int) ([]byte, int, error) {
	if off+2 > len(b) {
		return nil, off, errAt(epmLayer, off, ErrTruncated, "tower field length")
	}
	l := int(binary.LittleEndian.Uint16(b[off:]))
	off += 2
	if off+l > len(b) {
		return nil, off, errAt(epmLayer, off, ErrTruncated, "tower field of %d bytes, %d left", l, len(b)-off)
	}
	return b[off : off+l], off + l, nil
}

func towerPort(rhs []byte) uint16 {
	if len(rhs) < 2 {
		return 0
	}
	return binary.BigEndian.Uint16(rhs)
}

// towerString reads a NUL-terminated string floor; the copy lets the
// endpoint outlive the stub.
func towerString(rhs []byte) string {
	for i, c := range rhs {
		if c == 0 {
			return string(rhs[:i])
		}
	}
	return string(rhs)
}
