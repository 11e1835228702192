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
)

// Severities on ECS's numeric scale as this sensor uses it.
const (
	SeverityLow      = 3
	SeverityMedium   = 5
	SeverityHigh     = 7
	SeverityCritical = 9
)

type ruleDef struct {
	name, description string
	technique         ThreatTechnique
	tactic            ThreatTactic
	severity          int
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

// ruleBook is read-only after package initialisation.
func ruleBook(id string) ruleDef {
	switch id {
	case RuleTaskRegistered:
		return ruleDef{"Remote scheduled task registered",
			"A client registered (created or updated) a scheduled task on a remote host through ITaskSchedulerService SchRpcRegisterTask.",
			techScheduledTask, tacticExecution, SeverityMedium}
	case RuleAtJobCreated:
		return ruleDef{"Remote AT job created",
			"A client submitted an AT job to a remote host through ATSVC NetrJobAdd.",
			techAt, tacticExecution, SeverityHigh}
	case RuleAccountSet:
		return ruleDef{"Remote task account set",
			"A client set the account a task runs as on a remote host through SASec SASetAccountInformation.",
			techScheduledTask, tacticPersistence, SeverityHigh}
	case RuleAtExec:
		return ruleDef{"AtExec-style remote execution",
			"Remote task registered over \\pipe\\atsvc, run and deleted within minutes by the same client, optionally with its output read from ADMIN$\\Temp: the pattern of Impacket atexec and its clones.",
			techScheduledTask, tacticLateral, SeverityCritical}
	case RuleTaskRun:
		return ruleDef{"Remote scheduled task started",
			"A client started a task on a remote host on demand (SchRpcRun).",
			techScheduledTask, tacticExecution, SeverityLow}
	case RuleTaskEnabled:
		return ruleDef{"Remote scheduled task enabled",
			"A client enabled a task on a remote host (SchRpcEnableTask).",
			techScheduledTask, tacticPersistence, SeverityLow}
	case RuleTaskDeleted:
		return ruleDef{"Remote scheduled task or AT job deleted",
			"A client deleted a task or AT job on a remote host (SchRpcDelete, NetrJobDel).",
			techScheduledTask, tacticDefEvasion, SeverityLow}
	case RuleTaskFile:
		return ruleDef{"File written into a Tasks folder over SMB",
			"A file was written over SMB into Windows\\Tasks or Windows\\System32\\Tasks. Legacy .job files there are picked up as tasks; other files are staging only.",
			techScheduledTask, tacticPersistence, SeverityLow}
	case RuleTaskRecon:
		return ruleDef{"Remote scheduled task enumeration",
			"A client enumerated or read back tasks on a remote host.",
			techScheduledTask, tacticDiscovery, SeverityLow}
	}
	return ruleDef{name: id, severity: SeverityLow}
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
