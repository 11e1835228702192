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
		{OpSASetAccountInformation, "SASetAccountInformation", sasecSetAccountRequest, sasecSetAccountResponse},
		{OpSASetNSAccountInformation, "SASetNSAccountInformation", sasecSetNSAccountRequest, sasecSetNSAccountResponse},
		{OpSAGetNSAccountInformation, "SAGetNSAccountInformation", sasecGetNSAccountRequest, sasecGetNSAccountResponse},
		{OpSAGetAccountInformation, "SAGetAccountInformation", sasecGetAccountRequest, sasecGetAccountResponse},
	},
}

// sasecFlagNames: dwJobFlags defines one bit, TASK_FLAG_RUN_ONLY_IF_LOGGED_ON.
var sasecFlagNames = func() []string {
	n := make([]string, 14)
	n[13] = "TASK_FLAG_RUN_ONLY_IF_LOGGED_ON"
	return n
}()

func sasecSetAccountRequest(d ndrDec, _ TschOptions, out *TschInfo) error {
	var req tschsasec.SetAccountInformationRequest
	if err := d.unmarshal(&req); err != nil {
		return err
	}
	a := out.account()
	a.ServerName, a.JobName, a.AccountName = req.Handle, req.JobName, req.Account
	a.Flags, a.FlagsNames = req.JobFlags, flagNames(req.JobFlags, sasecFlagNames)
	t := out.task()
	t.Path, t.RunAs = req.JobName, req.Account
	return nil
}

func sasecSetAccountResponse(d ndrDec, _ TschOptions, out *TschInfo) error {
	var resp tschsasec.SetAccountInformationResponse
	if err := d.unmarshal(&resp); err != nil {
		return err
	}
	out.setHRESULT(resp.Return)
	return nil
}

func sasecSetNSAccountRequest(d ndrDec, _ TschOptions, out *TschInfo) error {
	var req tschsasec.SetNSAccountInformationRequest
	if err := d.unmarshal(&req); err != nil {
		return err
	}
	a := out.account()
	a.ServerName, a.AccountName = req.Handle, req.Account
	return nil
}

func sasecSetNSAccountResponse(d ndrDec, _ TschOptions, out *TschInfo) error {
	var resp tschsasec.SetNSAccountInformationResponse
	if err := d.unmarshal(&resp); err != nil {
		return err
	}
	out.setHRESULT(resp.Return)
	return nil
}

func sasecGetNSAccountRequest(d ndrDec, _ TschOptions, out *TschInfo) error {
	var req tschsasec.GetNSAccountInformationRequest
	if err := d.unmarshal(&req); err != nil {
		return err
	}
	out.account().ServerName = req.Handle
	return nil
}

func sasecGetNSAccountResponse(d ndrDec, _ TschOptions, out *TschInfo) error {
	var resp tschsasec.GetNSAccountInformationResponse
	if err := d.unmarshal(&resp); err != nil {
		return err
	}
	if resp.Buffer != "" {
		out.account().AccountName = resp.Buffer
	}
	out.setHRESULT(resp.Return)
	return nil
}

func sasecGetAccountRequest(d ndrDec, _ TschOptions, out *TschInfo) error {
	var req tschsasec.GetAccountInformationRequest
	if err := d.unmarshal(&req); err != nil {
		return err
	}
	a := out.account()
	a.ServerName, a.JobName = req.Handle, req.JobName
	out.setPath(req.JobName)
	return nil
}

func sasecGetAccountResponse(d ndrDec, _ TschOptions, out *TschInfo) error {
	var resp tschsasec.GetAccountInformationResponse
	if err := d.unmarshal(&resp); err != nil {
		return err
	}
	if resp.Buffer != "" {
		out.account().AccountName = resp.Buffer
		out.task().RunAs = resp.Buffer
	}
	out.setHRESULT(resp.Return)
	return nil
}
