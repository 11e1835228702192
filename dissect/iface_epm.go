package dissect

// The endpoint mapper (C706 Appendix O), port 135 and \pipe\epmapper. Its
// ept_map and ept_lookup answers are decoded by DecodeEPMMap and
// DecodeEPMLookup (epm.go) into the port table, not into events.

const uuidEPM = "e1af8308-5d1f-11c9-91a4-08002b14a0fa"

// Endpoint mapper operations.
const (
	OpEptInsert = Op(IfaceEPM)<<16 + iota // opnum 0, then one more each line
	OpEptDelete
	OpEptLookup
	OpEptMap
	OpEptLookupHandleFree
	OpEptInqObject
	OpEptMgmtDelete
)

var epmInterface = Interface{
	Iface: IfaceEPM, Name: "epm", UUID: uuidEPM, Major: 3, Minor: 0,
	Ops: []Operation{
		{Op: OpEptInsert, Name: "ept_insert"},
		{Op: OpEptDelete, Name: "ept_delete"},
		{Op: OpEptLookup, Name: "ept_lookup"},
		{Op: OpEptMap, Name: "ept_map"},
		{Op: OpEptLookupHandleFree, Name: "ept_lookup_handle_free"},
		{Op: OpEptInqObject, Name: "ept_inq_object"},
		{Op: OpEptMgmtDelete, Name: "ept_mgmt_delete"},
	},
}
