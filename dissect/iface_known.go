package dissect

// knownInterfaces names RPC interfaces that share pipes and ports with
// MS-TSCH, so that bind statistics read as words. They are counted, not
// decoded; the decoded ones are in the registry (iface.go).
var knownInterfaces = map[string]string{
	"12345778-1234-abcd-ef00-0123456789ab": "lsarpc",
	"12345778-1234-abcd-ef00-0123456789ac": "samr",
	"367abb81-9844-35f1-ad32-98f038001003": "svcctl",
	"4b324fc8-1670-01d3-1278-5a47bf6ee188": "srvsvc",
	"6bffd098-a112-3610-9833-46c3f87e345a": "wkssvc",
	"338cd001-2244-31f1-aaaa-900038001003": "winreg",
	"12345678-1234-abcd-ef00-0123456789ab": "spoolss",
	"82273fdc-e32a-18c3-3f78-827929dc23ea": "eventlog",
	"f6beaff7-1e19-4fbb-9f8f-b89e2018337c": "even6",
	"e3514235-4b06-11d1-ab04-00c04fc2dcd2": "drsuapi",
	"12345678-1234-abcd-ef00-01234567cffb": "netlogon",
	"000001a0-0000-0000-c000-000000000046": "ISystemActivator",
	"99fcfec4-5260-101b-bbcb-00aa0021347a": "IObjectExporter",
	"00000143-0000-0000-c000-000000000046": "IRemUnknown2",
	"f309ad18-d86a-11d0-a075-00c04fb68820": "IWbemLevel1Login",
	"9556dc99-828c-11cf-a37e-00aa003240c7": "IWbemServices",
	"00020400-0000-0000-c000-000000000046": "IDispatch",
	"c681d488-d850-11d0-8c52-00c04fd90f7e": "efsrpc",
	"df1941c5-fe89-4e79-bf10-463657acf44d": "efsrpc",
	"4fc742e0-4a10-11cf-8273-00aa004ae673": "netdfs",
	"894de0c0-0d55-11d3-a322-00c04fa321a1": "InitShutdown",
}
