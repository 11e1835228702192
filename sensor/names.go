package sensor

import "unicode/utf8"

// maxNameBytes bounds a file name or tree path an SMB request carries and
// the sensor keeps (pending request, open file, tree). A name may be 32,767 UTF-16 units:
// 96 KB as UTF-8, and 4,096 pending CREATEs of such names took 400 MB on
// one connection. Longer names keep their head and tail, so a prefix (a
// share's directory) or a suffix (.job) still matches.
const maxNameBytes = 512

// boundName returns name, or its first and last bytes around "…" when it
// is longer than maxNameBytes (cut on rune boundaries). The copy is made
// so that the long string can be collected.
func boundName(c *conn, name string) string {
	if len(name) <= maxNameBytes {
		return name
	}
	c.anomaly("smb_name_too_long")
	const half = maxNameBytes/2 - len("…")
	head := half
	for head > 0 && !utf8.RuneStart(name[head]) {
		head--
	}
	tail := len(name) - half
	for tail < len(name) && !utf8.RuneStart(name[tail]) {
		tail++
	}
	return name[:head] + "…" + name[tail:]
}
