// Package dissect holds tschsensor's pure wire parsers: NBSS, SMB1, SMB2/3,
// DCE-RPC, NTLMSSP, the MS-TSCH stubs (through go-msrpc) and task XML.
//
// Every function takes bytes and returns typed values or an error; none does
// I/O, logs or keeps package-level mutable state. Header decoders write into
// caller-owned structs and alias the input: copy what must outlive the buffer.
// Malformed input yields an *Error naming the layer and offset around one of
// the sentinels below; "need more bytes" is a result, never an error.
package dissect

import (
	"errors"
	"fmt"
)

// Sentinels wrapped by *Error.
var (
	ErrTruncated = errors.New("truncated")
	ErrMalformed = errors.New("malformed")
	ErrLimit     = errors.New("limit exceeded")
)

// Error says where in which layer decoding failed.
type Error struct {
	Layer  string // "smb2", "dcerpc", ...
	Offset int    // byte offset within the layer's input
	Err    error  // one of the sentinels, possibly wrapped with detail
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s: offset %d: %v", e.Layer, e.Offset, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

func errAt(layer string, off int, err error, format string, args ...any) error {
	if format == "" {
		return &Error{Layer: layer, Offset: off, Err: err}
	}
	return &Error{Layer: layer, Offset: off, Err: fmt.Errorf("%w: "+format, append([]any{err}, args...)...)}
}
