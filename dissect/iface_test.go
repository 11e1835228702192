package dissect

import "testing"

// TestRegistry checks the tables against themselves: each row sits at its
// opnum and names its own interface, every decoded interface has a request
// and a response decoder for each of its operations, and UUIDs are unique
// across the registry and the known-names table.
func TestRegistry(t *testing.T) {
	seen := map[string]string{}
	for _, in := range Interfaces() {
		if in.Iface.Lookup() != in || in.Iface.String() != in.Name || !in.Iface.Decoded() {
			t.Errorf("%s: registry entry does not point back at itself", in.Name)
		}
		if prev, dup := seen[in.UUID]; dup {
			t.Errorf("%s and %s share UUID %s", in.Name, prev, in.UUID)
		}
		seen[in.UUID] = in.Name
		if _, dup := knownInterfaces[in.UUID]; dup {
			t.Errorf("%s is both decoded and in the known-names table", in.Name)
		}
		if InterfaceName(in.UUID) != in.Name || IfaceByUUID(in.UUID, in.Major) != in.Iface {
			t.Errorf("%s: lookup by UUID fails", in.Name)
		}
		for n, op := range in.Ops {
			if op.Op != OpOf(in.Iface, uint16(n)) || op.Op.Iface() != in.Iface || int(op.Op.Num()) != n {
				t.Errorf("%s row %d holds %s (opnum %d)", in.Name, n, op.Name, op.Op.Num())
			}
			if op.Op.String() != op.Name || op.Name == "" {
				t.Errorf("%s opnum %d: name %q, Op.String %q", in.Name, n, op.Name, op.Op.String())
			}
			if in.Iface != IfaceEPM && (op.request == nil || op.response == nil) {
				t.Errorf("%s.%s lacks a decoder", in.Name, op.Name)
			}
		}
	}
	if IfaceUnknown.Decoded() || Iface(200).Lookup() != nil || OpOf(IfaceATSVC, 4).String() != "" {
		t.Error("unknown interface or opnum resolves")
	}
	if OpSchRpcRegisterTask.String() != "SchRpcRegisterTask" || OpNetrJobAdd.String() != "NetrJobAdd" ||
		OpSASetAccountInformation.String() != "SASetAccountInformation" || OpEptMap.String() != "ept_map" {
		t.Error("operation constants do not name their rows")
	}
}
