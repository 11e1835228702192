package detect

import (
	"regexp"
	"strings"

	"github.com/tschsensor/tschsensor/dissect"
)

// Rule identifiers. The first four are the sensor's contract with SIEM
// content; docs/detections.md documents each with its known false positives.
const (
	RuleTaskRegistered = "remote_task_registered"
	RuleAtJobCreated   = "remote_at_job_created"
	RuleAccountSet     = "remote_task_account_set"
	RuleAtExec         = "atexec"
	RuleTaskRun        = "remote_task_run"
	RuleTaskEnabled    = "remote_task_enabled"
	RuleTaskDeleted    = "remote_task_deleted"
	RuleTaskFile       = "task_file_written_smb"
	RuleTaskRecon      = "remote_task_recon"
	RuleLogEvasion     = "task_log_evasion"
	RuleTaskHijack     = "task_hijack"
	RuleLegacyTask     = "legacy_task_created"
)

// Severities on ECS's numeric scale as this sensor uses it.
const (
	SeverityLow      = 3
	SeverityMedium   = 5
	SeverityHigh     = 7
	SeverityCritical = 9
)

type ruleDef struct {
	id, name, description string
	technique             ThreatTechnique
	tactic                ThreatTactic
	severity              int
	// ruleset is "tschsensor" for built-in rules, the rules file's name
	// for custom ones; tags are a custom rule's.
	ruleset string
	tags    []string
}

var (
	techScheduledTask = ThreatTechnique{ID: "T1053.005", Name: "Scheduled Task/Job: Scheduled Task", Reference: "https://attack.mitre.org/techniques/T1053/005/"}
	techAt            = ThreatTechnique{ID: "T1053.002", Name: "Scheduled Task/Job: At", Reference: "https://attack.mitre.org/techniques/T1053/002/"}
	tacticExecution   = ThreatTactic{ID: "TA0002", Name: "Execution"}
	tacticPersistence = ThreatTactic{ID: "TA0003", Name: "Persistence"}
	tacticLateral     = ThreatTactic{ID: "TA0008", Name: "Lateral Movement"}
	tacticDiscovery   = ThreatTactic{ID: "TA0007", Name: "Discovery"}
	tacticDefEvasion  = ThreatTactic{ID: "TA0005", Name: "Defense Evasion"}
)

// builtinDefs describes the built-in rules, in the order `rules list`
// prints them. Read-only after package initialisation.
var builtinDefs = []ruleDef{
	{id: RuleTaskRegistered, name: "Remote scheduled task registered",
		description: "A client registered (created or updated) a scheduled task on a remote host through ITaskSchedulerService SchRpcRegisterTask.",
		technique:   techScheduledTask, tactic: tacticExecution, severity: SeverityMedium},
	{id: RuleAtJobCreated, name: "Remote AT job created",
		description: "A client submitted an AT job to a remote host through ATSVC NetrJobAdd.",
		technique:   techAt, tactic: tacticExecution, severity: SeverityHigh},
	{id: RuleAccountSet, name: "Remote task account set",
		description: "A client set the account a task runs as on a remote host through SASec SASetAccountInformation.",
		technique:   techScheduledTask, tactic: tacticPersistence, severity: SeverityHigh},
	{id: RuleAtExec, name: "AtExec-style remote execution",
		description: "Remote task registered over \\pipe\\atsvc, run and deleted within minutes by the same client, optionally with its output read from ADMIN$\\Temp: the pattern of Impacket atexec and its clones.",
		technique:   techScheduledTask, tactic: tacticLateral, severity: SeverityCritical},
	{id: RuleTaskRun, name: "Remote scheduled task started",
		description: "A client started a task on a remote host on demand (SchRpcRun).",
		technique:   techScheduledTask, tactic: tacticExecution, severity: SeverityLow},
	{id: RuleTaskEnabled, name: "Remote scheduled task enabled",
		description: "A client enabled a task on a remote host (SchRpcEnableTask).",
		technique:   techScheduledTask, tactic: tacticPersistence, severity: SeverityLow},
	{id: RuleTaskDeleted, name: "Remote scheduled task or AT job deleted",
		description: "A client deleted a task or AT job on a remote host (SchRpcDelete, NetrJobDel).",
		technique:   techScheduledTask, tactic: tacticDefEvasion, severity: SeverityLow},
	{id: RuleTaskFile, name: "File written into a Tasks folder over SMB",
		description: "A file was written over SMB into Windows\\Tasks or Windows\\System32\\Tasks. Legacy .job files there are picked up as tasks; other files are staging only.",
		technique:   techScheduledTask, tactic: tacticPersistence, severity: SeverityLow},
	{id: RuleTaskRecon, name: "Remote scheduled task enumeration",
		description: "A client enumerated or read back tasks on a remote host.",
		technique:   techScheduledTask, tactic: tacticDiscovery, severity: SeverityLow},
	{id: RuleLogEvasion, name: "Task registration info hides from the event log",
		description: "A registered task's Author or Description is overlong or holds control characters, or its Author claims Microsoft for a task outside \\Microsoft\\: what the event log and the console show is poisoned or pushed out of view.",
		technique:   techScheduledTask, tactic: tacticDefEvasion, severity: SeverityHigh},
	{id: RuleTaskHijack, name: "Existing scheduled task hijacked and restored",
		description: "An existing task's definition was replaced (SchRpcRegisterTask with TASK_UPDATE), the task run on demand, and its previous XML put back: the pattern the SolarWinds intruders used to run code through a legitimate task.",
		technique:   techScheduledTask, tactic: tacticExecution, severity: SeverityCritical},
	{id: RuleLegacyTask, name: "Legacy scheduled task created over SMB",
		description: "A .job file was written into the Tasks folder over SMB and its account set with SASec SASetAccountInformation: a Task Scheduler 1.0 task created remotely, the path MS-TSCH describes for SASec.",
		technique:   techScheduledTask, tactic: tacticExecution, severity: SeverityHigh},
}

// ruleBook returns a built-in rule's definition.
func ruleBook(id string) ruleDef {
	for _, d := range builtinDefs {
		if d.id == id {
			return d
		}
	}
	return ruleDef{id: id, name: id, severity: SeverityLow}
}

// statelessRules run on every call, in order, before the stateful ones.
var statelessRules = []Rule{
	RuleFunc(taskRegistered),
	onOps(RuleAtJobCreated, dissect.OpNetrJobAdd),
	onOps(RuleTaskDeleted, dissect.OpNetrJobDel),
	onOps(RuleAccountSet, dissect.OpSASetAccountInformation, dissect.OpSASetNSAccountInformation),
	onOps(RuleTaskEnabled, dissect.OpSchRpcEnableTask),
	RuleFunc(logEvasion),
}

// taskRegistered raises remote_task_registered on every SchRpcRegisterTask,
// its severity raised by what makes the task suspicious.
func taskRegistered(a *Alerts, c *Call, ev *Event) {
	if c.Op() != dissect.OpSchRpcRegisterTask {
		return
	}
	var why []string
	if c.Tsch != nil {
		why = taskRisk(c.Tsch.Task, taskPath(c))
	}
	a.alert(RuleTaskRegistered, c, ev, []string{ev.Event.ID}, why)
}

var (
	// lolbins are programs attackers run through tasks (LOLBAS).
	lolbins = []string{"cmd.exe", "powershell.exe", "pwsh.exe", "rundll32.exe", "regsvr32.exe", "mshta.exe",
		"wscript.exe", "cscript.exe", "certutil.exe", "bitsadmin.exe", "msbuild.exe", "installutil.exe",
		"regasm.exe", "regsvcs.exe", "wmic.exe", "msiexec.exe", "forfiles.exe", "schtasks.exe", "at.exe", "bash.exe"}
	randomRootName = regexp.MustCompile(`^\\[A-Za-z]{8}$`)
	encodedCommand = regexp.MustCompile(`(?i)(^|\s)-(e|en|enc|enco|encod|encode|encodedc|encodedcommand)\s+[A-Za-z0-9+/=]{16,}`)
	tempRedirect   = regexp.MustCompile(`(?i)>\s*"?(%windir%|%systemroot%|c:\\windows)\\temp\\`)
)

// taskRisk lists what makes a task definition suspicious, for severity and
// for the analyst ("why").
func taskRisk(t *dissect.TaskInfo, path string) []string {
	var why []string
	if t != nil {
		if t.Hidden != nil && *t.Hidden {
			why = append(why, "hidden task")
		}
		ra := strings.ToUpper(t.RunAs)
		if ra == "S-1-5-18" || ra == "SYSTEM" || ra == "NT AUTHORITY\\SYSTEM" || ra == "LOCALSYSTEM" {
			why = append(why, "runs as SYSTEM")
		}
		if strings.EqualFold(t.RunLevel, "HighestAvailable") {
			why = append(why, "highest run level")
		}
		cmdLine := t.Command + " " + t.Arguments
		base := strings.ToLower(t.Command)
		if i := strings.LastIndexAny(base, `\/`); i >= 0 {
			base = base[i+1:]
		}
		base = strings.Trim(base, `"' `)
		for _, l := range lolbins {
			if base == l || base+".exe" == l {
				why = append(why, "shell or LOLBin: "+l)
				break
			}
		}
		if t.XMLOversized {
			why = append(why, "oversized task definition")
		}
		if encodedCommand.MatchString(cmdLine) {
			why = append(why, "encoded command")
		}
		if tempRedirect.MatchString(cmdLine) {
			why = append(why, "output redirected into Windows\\Temp")
		}
	}
	if randomRootName.MatchString(path) {
		why = append(why, "random-looking 8-letter name at the root")
	}
	return why
}
