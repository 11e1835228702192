package dissect

// SASec (MS-TSCH 3.2.5.3): account information of legacy .job tasks, also
// on \pipe\atsvc.

import tschsasec "github.com/oiweiwei/go-msrpc/msrpc/tsch/sasec/v1"

const uuidSASec = "378e52b0-c0a9-11cf-822d-00aa0051e40f"

// SASec operations.
const (
	OpSASetAccountInformation = Op(IfaceSASec)<<16 + iota // opnum 0, then one more each line
	OpSASetNSAccountInformation
	OpSAGetNSAccountInformation
	OpSAGetAccountInformation
)

var sasecInterface = Interface{
	Iface: IfaceSASec, Name: "SASec", UUID: uuidSASec, Major: 1, Minor: 0,
	prepare: func(out *TschInfo) { out.account() },
	Ops: []Operation{
		{OpSASetAccountInformation, "SASetAccountInformation", decodeAs(sasecSetAccountRequest), decodeAs(sasecSetAccountResponse)},
		{OpSASetNSAccountInformation, "SASetNSAccountInformation", decodeAs(sasecSetNSAccountRequest), decodeAs(sasecSetNSAccountResponse)},
		{OpSAGetNSAccountInformation, "SAGetNSAccountInformation", decodeAs(sasecGetNSAccountRequest), decodeAs(sasecGetNSAccountResponse)},
		{OpSAGetAccountInformation, "SAGetAccountInformation", decodeAs(sasecGetAccountRequest), decodeAs(sasecGetAccountResponse)},
	},
}

// sasecFlagNames: dwJobFlags defines one bit, TASK_FLAG_RUN_ONLY_IF_LOGGED_ON.
var sasecFlagNames = func() []string {
	n := make([]string, 14)
	n[13] = "TASK_FLAG_RUN_ONLY_IF_LOGGED_ON"
	return n
}()

func sasecSetAccountRequest(req *tschsasec.SetAccountInformationRequest, _ TschOptions, out *TschInfo) {
	a := out.account()
	a.ServerName, a.JobName, a.AccountName = req.Handle, req.JobName, req.Account
	a.Flags, a.FlagsNames = req.JobFlags, flagNames(req.JobFlags, sasecFlagNames)
	t := out.task()
	t.Path, t.RunAs = req.JobName, req.Account
}

func sasecSetAccountResponse(resp *tschsasec.SetAccountInformationResponse, _ TschOptions, out *TschInfo) {
	out.setHRESULT(resp.Return)
}

func sasecSetNSAccountRequest(req *tschsasec.SetNSAccountInformationRequest, _ TschOptions, out *TschInfo) {
	a := out.account()
	a.ServerName, a.AccountName = req.Handle, req.Account
}

func sasecSetNSAccountResponse(resp *tschsasec.SetNSAccountInformationResponse, _ TschOptions, out *TschInfo) {
	out.setHRESULT(resp.Return)
}

func sasecGetNSAccountRequest(req *tschsasec.GetNSAccountInformationRequest, _ TschOptions, out *TschInfo) {
	out.account().ServerName = req.Handle
}

func sasecGetNSAccountResponse(resp *tschsasec.GetNSAccountInformationResponse, _ TschOptions, out *TschInfo) {
	if resp.Buffer != "" {
		out.account().AccountName = resp.Buffer
	}
	out.setHRESULT(resp.Return)
}

func sasecGetAccountRequest(req *tschsasec.GetAccountInformationRequest, _ TschOptions, out *TschInfo) {
	a := out.account()
	a.ServerName, a.JobName = req.Handle, req.JobName
	out.setPath(req.JobName)
}

func sasecGetAccountResponse(resp *tschsasec.GetAccountInformationResponse, _ TschOptions, out *TschInfo) {
	if resp.Buffer != "" {
		out.account().AccountName = resp.Buffer
		out.task().RunAs = resp.Buffer
	}
	out.setHRESULT(resp.Return)
}
