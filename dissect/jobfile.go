package dissect

// Legacy Task Scheduler 1.0 .job files (MS-TSCH 2.4): what a client writes
// into Windows\Tasks over SMB before SASetAccountInformation names the
// account it runs as. A fixed-length section of 68 bytes, then counted
// UTF-16 strings (application, parameters, working directory, author,
// comment), user data, reserved data and triggers.

import (
	"encoding/binary"
	"unicode/utf16"
)

const (
	jobFixedLen = 68
	jobLayer    = "job"
	// maxJobString bounds one string of a .job file: MAX_PATH-sized fields
	// in practice, a comment at most a few KiB.
	maxJobString = 1 << 15
)

// JobFile is what a .job file says its task does.
type JobFile struct {
	ProductVersion   uint16 `json:"product_version"`
	FileVersion      uint16 `json:"file_version"`
	UUID             string `json:"uuid,omitempty"`
	Priority         uint32 `json:"priority,omitempty"`
	MaxRunTimeMS     uint32 `json:"max_run_time_ms,omitempty"`
	Flags            uint32 `json:"flags,omitempty"`
	ApplicationName  string `json:"application_name,omitempty"`
	Parameters       string `json:"parameters,omitempty"`
	WorkingDirectory string `json:"working_directory,omitempty"`
	Author           string `json:"author,omitempty"`
	Comment          string `json:"comment,omitempty"`
	Triggers         uint16 `json:"triggers"`
}

// ParseJobFile decodes a .job file (or its first bytes: what is complete
// is returned with an error naming where it stopped). The strings are
// copies.
func ParseJobFile(b []byte) (*JobFile, error) {
	if len(b) < jobFixedLen+2 {
		return nil, errAt(jobLayer, 0, ErrTruncated, "%d bytes, fixed-length section needs %d", len(b), jobFixedLen+2)
	}
	le := binary.LittleEndian
	j := &JobFile{ProductVersion: le.Uint16(b[0:]), FileVersion: le.Uint16(b[2:]),
		Priority: le.Uint32(b[32:]), MaxRunTimeMS: le.Uint32(b[36:]), Flags: le.Uint32(b[48:])}
	if j.FileVersion != 1 {
		return nil, errAt(jobLayer, 2, ErrMalformed, "file version %d, want 1", j.FileVersion)
	}
	j.UUID = guidString(b[4:20])
	// App Name Len Offset points at the application name's length field;
	// in every file it is 70 (after the running instance count), but the
	// field is what the Task Scheduler reads.
	off := int(le.Uint16(b[20:]))
	if off < jobFixedLen+2 || off > len(b) {
		return j, errAt(jobLayer, 20, ErrMalformed, "application name offset %d outside %d bytes", off, len(b))
	}
	for _, dst := range []*string{&j.ApplicationName, &j.Parameters, &j.WorkingDirectory, &j.Author, &j.Comment} {
		s, next, err := jobString(b, off)
		if err != nil {
			return j, err
		}
		*dst, off = s, next
	}
	// User data and reserved data: a size, then bytes.
	for range 2 {
		if off+2 > len(b) {
			return j, errAt(jobLayer, off, ErrTruncated, "data size")
		}
		n := int(le.Uint16(b[off:]))
		if off+2+n > len(b) {
			return j, errAt(jobLayer, off, ErrTruncated, "data of %d bytes", n)
		}
		off += 2 + n
	}
	if off+2 > len(b) {
		return j, errAt(jobLayer, off, ErrTruncated, "trigger count")
	}
	j.Triggers = le.Uint16(b[off:])
	return j, nil
}

// jobString reads a counted UTF-16LE string: the number of characters with
// the terminating NUL, then the characters.
func jobString(b []byte, off int) (string, int, error) {
	if off+2 > len(b) {
		return "", off, errAt(jobLayer, off, ErrTruncated, "string length")
	}
	n := int(binary.LittleEndian.Uint16(b[off:]))
	off += 2
	if n > maxJobString {
		return "", off, errAt(jobLayer, off-2, ErrLimit, "string of %d characters", n)
	}
	if off+2*n > len(b) {
		return "", off, errAt(jobLayer, off-2, ErrTruncated, "string of %d characters", n)
	}
	u := make([]uint16, n)
	for i := range u {
		u[i] = binary.LittleEndian.Uint16(b[off+2*i:])
	}
	off += 2 * n
	for len(u) > 0 && u[len(u)-1] == 0 {
		u = u[:len(u)-1]
	}
	return string(utf16.Decode(u)), off, nil
}

// guidString renders 16 bytes of a little-endian GUID as text.
func guidString(b []byte) string {
	le := binary.LittleEndian
	const hex = "0123456789abcdef"
	out := make([]byte, 0, 36)
	put := func(v uint64, n int) {
		for i := n - 1; i >= 0; i-- {
			out = append(out, hex[v>>(4*uint(i))&0xf])
		}
	}
	put(uint64(le.Uint32(b[0:])), 8)
	out = append(out, '-')
	put(uint64(le.Uint16(b[4:])), 4)
	out = append(out, '-')
	put(uint64(le.Uint16(b[6:])), 4)
	out = append(out, '-')
	for i, c := range b[8:] {
		if i == 2 {
			out = append(out, '-')
		}
		put(uint64(c), 2)
	}
	return string(out)
}
