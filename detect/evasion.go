package detect

import (
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/tschsensor/tschsensor/dissect"
)

// Bounds beyond which registration info is read as an attempt to flood or
// push content out of the event-log view (4698 prints Author and
// Description). Real tasks: authors are account or vendor names, Windows'
// longest built-in descriptions are a few hundred characters.
const (
	maxAuthorRunes      = 256
	maxDescriptionRunes = 4096
)

// logEvasion is the stateless rule task_log_evasion: a registered task whose
// RegistrationInfo poisons or overflows what the event log and the Task
// Scheduler console show.
func logEvasion(a *Alerts, c *Call, ev *Event) {
	if c.Op() != dissect.OpSchRpcRegisterTask || c.Tsch == nil || c.Tsch.Task == nil {
		return
	}
	if why := registrationEvasion(c.Tsch.Task); len(why) > 0 {
		al := a.newAlert(RuleLogEvasion, c, ev, []string{ev.Event.ID}, nil)
		al.Event.Reason = strings.Join(why, "; ")
		a.publish(al)
	}
}

// registrationEvasion lists what is wrong with a task's Author and
// Description.
func registrationEvasion(t *dissect.TaskInfo) []string {
	var why []string
	if n := utf8.RuneCountInString(t.Author); n > maxAuthorRunes {
		why = append(why, "Author of "+strconv.Itoa(n)+" characters")
	}
	if n := utf8.RuneCountInString(t.Description); n > maxDescriptionRunes {
		why = append(why, "Description of "+strconv.Itoa(n)+" characters")
	}
	// An author is one line; a description may have line breaks and tabs.
	if r, ok := hiddenRune(t.Author, false); ok {
		why = append(why, "control character "+strconv.QuoteRuneToASCII(r)+" in Author")
	}
	if r, ok := hiddenRune(t.Description, true); ok {
		why = append(why, "control character "+strconv.QuoteRuneToASCII(r)+" in Description")
	}
	if strings.Contains(strings.ToLower(t.Author), "microsoft") && !strings.HasPrefix(strings.ToLower(t.Path), `\microsoft\`) {
		why = append(why, "Author claims Microsoft for a task outside \\Microsoft\\")
	}
	return why
}

// hiddenRune finds a control or format character (C0/C1 controls,
// bidirectional overrides, zero-width characters) that reorders or hides
// text in a viewer.
func hiddenRune(s string, lineBreaks bool) (rune, bool) {
	for _, r := range s {
		if lineBreaks && (r == '\r' || r == '\n' || r == '\t') {
			continue
		}
		if unicode.Is(unicode.Cc, r) || unicode.Is(unicode.Cf, r) || r == utf8.RuneError {
			return r, true
		}
	}
	return 0, false
}
