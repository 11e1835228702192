package dissect

import (
	"bytes"
	"encoding/binary"
)

// SMB1 (MS-CIFS, with the MS-SMB extensions) as far as the sensor needs it:
// the header, the AndX chain and the bodies of the commands that open,
// read, write and close named pipes and files. Every offset read from the
// wire is relative to the start of the SMB header (MS-CIFS 2.2.3.1), which
// is also the reference for the alignment of Unicode strings.
//
// A message is the header, then one or more command blocks: WordCount (1),
// Words (2*WordCount), ByteCount (2), Bytes. AndX commands start their words
// with AndXCommand, AndXReserved, AndXOffset (the next block's WordCount,
// from the header start).

const layerSMB1 = "smb1"

// SMB1 commands (MS-CIFS 2.2.2.1).
const (
	SMB1Delete            = 0x06
	SMB1Close             = 0x04
	SMB1LockingAndX       = 0x24
	SMB1Transaction       = 0x25
	SMB1TransactionSec    = 0x26
	SMB1OpenAndX          = 0x2d
	SMB1ReadAndX          = 0x2e
	SMB1WriteAndX         = 0x2f
	SMB1Transaction2      = 0x32
	SMB1Transaction2Sec   = 0x33
	SMB1TreeDisconnect    = 0x71
	SMB1Negotiate         = 0x72
	SMB1SessionSetupAndX  = 0x73
	SMB1LogoffAndX        = 0x74
	SMB1TreeConnectAndX   = 0x75
	SMB1NTTransact        = 0xa0
	SMB1NTTransactSec     = 0xa1
	SMB1NTCreateAndX      = 0xa2
	SMB1NoAndXCommand     = 0xff
	SMB1HeaderLen         = 32
	SMB1FlagsReply        = 0x80
	SMB1Flags2Unicode     = 0x8000
	SMB1Flags2NTStatus    = 0x4000
	SMB1Flags2ExtSecurity = 0x0800
	SMB1Flags2Signature   = 0x0004
	SMB1CapExtSecurity    = 0x80000000

	// TransactNmPipe is the TRANSACTION subcommand (setup word 0) that
	// writes to a named pipe and reads the reply (MS-CIFS 2.2.5.6).
	TransactNmPipe = 0x0026
	// Trans2SetFileInformation is the TRANSACTION2 subcommand that can set
	// a file's delete disposition (MS-CIFS 2.2.6.9).
	Trans2SetFileInformation = 0x0008

	// WRITE_ANDX WriteMode bits (MS-CIFS 2.2.4.43.1).
	SMB1WriteRawMode      = 0x0004
	SMB1WriteMessageStart = 0x0008

	// Resource types of NT_CREATE_ANDX and OPEN_ANDX responses.
	SMB1FileTypeDisk            = 0
	SMB1FileTypeByteModePipe    = 1
	SMB1FileTypeMessageModePipe = 2

	// MaxSMB1AndX bounds the commands walked in one AndX chain; real chains
	// have two or three.
	MaxSMB1AndX = 16
)

// SMB1Header is the fixed SMB1 header (MS-CIFS 2.2.3.1).
type SMB1Header struct {
	Command uint8
	Status  uint32
	Flags   uint8
	Flags2  uint16
	PID     uint32 // PIDHigh<<16 | PIDLow
	TID     uint16
	UID     uint16
	MID     uint16
}

// Response reports whether the message is a server reply.
func (h *SMB1Header) Response() bool { return h.Flags&SMB1FlagsReply != 0 }

// Unicode reports whether the message's strings are UTF-16LE.
func (h *SMB1Header) Unicode() bool { return h.Flags2&SMB1Flags2Unicode != 0 }

// DecodeSMB1Header decodes the header at the start of msg.
func DecodeSMB1Header(msg []byte, h *SMB1Header) error {
	if len(msg) < SMB1HeaderLen {
		return errAt(layerSMB1, len(msg), ErrTruncated, "header needs %d bytes", SMB1HeaderLen)
	}
	if [4]byte(msg[:4]) != magicSMB1 {
		return errAt(layerSMB1, 0, ErrMalformed, "bad protocol id")
	}
	le := binary.LittleEndian
	h.Command = msg[4]
	h.Status = le.Uint32(msg[5:])
	h.Flags = msg[9]
	h.Flags2 = le.Uint16(msg[10:])
	h.PID = uint32(le.Uint16(msg[12:]))<<16 | uint32(le.Uint16(msg[26:]))
	h.TID = le.Uint16(msg[24:])
	h.UID = le.Uint16(msg[28:])
	h.MID = le.Uint16(msg[30:])
	return nil
}

// SMB1Command is one command block of a message. Words and Bytes alias
// the message.
type SMB1Command struct {
	Command uint8
	// Offset is where the block's WordCount lies, from the header start.
	Offset int
	Words  []byte
	// ByteCount is the declared length of Bytes; Bytes holds the part of it
	// inside the message (the caller may hold only a large message's head).
	ByteCount   int
	Bytes       []byte
	BytesOffset int // offset of Bytes from the header start
}

// isAndX reports the commands whose words start with the AndX header.
func isAndX(cmd uint8) bool {
	switch cmd {
	case SMB1LockingAndX, SMB1OpenAndX, SMB1ReadAndX, SMB1WriteAndX, SMB1SessionSetupAndX,
		SMB1LogoffAndX, SMB1TreeConnectAndX, SMB1NTCreateAndX:
		return true
	}
	return false
}

// SMB1Chain walks the command blocks of one message:
//
//	var ch SMB1Chain
//	ch.Start(msg, &hdr)
//	for ch.Next(&cmd) { ... }
//	if err := ch.Err(); err != nil { ... }
type SMB1Chain struct {
	msg  []byte
	next uint8
	off  int
	n    int
	err  error
}

// Start begins the walk at the first block after the header h was decoded
// from.
func (c *SMB1Chain) Start(msg []byte, h *SMB1Header) {
	*c = SMB1Chain{msg: msg, next: h.Command, off: SMB1HeaderLen}
}

// Err returns what ended the walk early, or nil.
func (c *SMB1Chain) Err() error { return c.err }

// Next decodes the next block into cmd; false at the chain's end or on
// error. AndX offsets must move forward and stay in the message, and the
// chain is at most MaxSMB1AndX long, so the walk always ends.
func (c *SMB1Chain) Next(cmd *SMB1Command) bool {
	if c.err != nil || c.next == SMB1NoAndXCommand || c.off == 0 {
		return false
	}
	if c.n >= MaxSMB1AndX {
		c.err = errAt(layerSMB1, c.off, ErrLimit, "AndX chain longer than %d", MaxSMB1AndX)
		return false
	}
	c.n++
	msg, off := c.msg, c.off
	if off >= len(msg) {
		c.err = errAt(layerSMB1, off, ErrTruncated, "command block beyond message of %d", len(msg))
		return false
	}
	wc := int(msg[off])
	wend := off + 1 + 2*wc
	if wend > len(msg) {
		c.err = errAt(layerSMB1, off, ErrTruncated, "%d parameter words beyond message of %d", wc, len(msg))
		return false
	}
	*cmd = SMB1Command{Command: c.next, Offset: off, Words: msg[off+1 : wend]}
	if wend+2 <= len(msg) {
		cmd.ByteCount = int(binary.LittleEndian.Uint16(msg[wend:]))
		cmd.BytesOffset = wend + 2
		cmd.Bytes = msg[wend+2 : min(wend+2+cmd.ByteCount, len(msg))]
	} else {
		cmd.BytesOffset = len(msg)
	}
	c.off = 0
	if isAndX(cmd.Command) && wc >= 2 {
		next := cmd.Words[0]
		nextOff := int(binary.LittleEndian.Uint16(cmd.Words[2:]))
		if next != SMB1NoAndXCommand {
			if nextOff <= off || nextOff >= len(msg) {
				c.err = errAt(layerSMB1, off+3, ErrMalformed, "AndX offset %d does not move forward from %d within %d", nextOff, off, len(msg))
				return true // this block is still good
			}
			c.next, c.off = next, nextOff
		}
	}
	return true
}

// words returns the command's words, checking there are at least n.
func (cmd *SMB1Command) words(n int) ([]byte, error) {
	if len(cmd.Words) < 2*n {
		return nil, errAt(layerSMB1, cmd.Offset, ErrTruncated, "command 0x%02x has %d words, want %d", cmd.Command, len(cmd.Words)/2, n)
	}
	return cmd.Words, nil
}

// smb1Buf returns msg[off:off+n] for a buffer located from the header start.
func smb1Buf(msg []byte, off, n int) ([]byte, error) {
	if n == 0 {
		return nil, nil
	}
	if off < SMB1HeaderLen || n < 0 || off > len(msg) || n > len(msg)-off {
		return nil, errAt(layerSMB1, off, ErrTruncated, "buffer of %d bytes at %d beyond message of %d", n, off, len(msg))
	}
	return msg[off : off+n], nil
}

// smb1String reads a NUL-terminated SMB_STRING at off (from the header
// start) and before end: UTF-16LE aligned to 2 bytes when unicode, else
// OEM. A string missing its terminator runs to end. next is the offset
// after the terminator.
func smb1String(msg []byte, off, end int, unicode bool) (s string, next int) {
	end = min(end, len(msg))
	if unicode && off%2 == 1 {
		off++
	}
	if off >= end {
		return "", end
	}
	b := msg[off:end]
	if !unicode {
		if i := bytes.IndexByte(b, 0); i >= 0 {
			return oemString(b[:i]), off + i + 1
		}
		return oemString(b), end
	}
	for i := 0; i+1 < len(b); i += 2 {
		if b[i] == 0 && b[i+1] == 0 {
			return UTF16String(b[:i]), off + i + 2
		}
	}
	return UTF16String(b), end
}

// bytesEnd is the end offset of the command's bytes inside msg.
func (cmd *SMB1Command) bytesEnd() int { return cmd.BytesOffset + len(cmd.Bytes) }

// SMB1NegotiateResponse is the NT LM 0.12 NEGOTIATE response (MS-CIFS
// 2.2.4.52.2, MS-SMB 2.2.4.5.2).
type SMB1NegotiateResponse struct {
	DialectIndex  uint16
	SecurityMode  uint8
	MaxBufferSize uint32
	Capabilities  uint32
	// Challenge is the 8-byte raw NTLM challenge (no extended security);
	// SecurityBlob the GSS token (extended security). Both alias msg.
	Challenge    []byte
	SecurityBlob []byte
}

// ParseSMB1NegotiateResponse decodes a NEGOTIATE response. Older dialects'
// shorter responses are refused with ErrTruncated.
func ParseSMB1NegotiateResponse(cmd *SMB1Command, r *SMB1NegotiateResponse) error {
	*r = SMB1NegotiateResponse{}
	w, err := cmd.words(17)
	if err != nil {
		return err
	}
	le := binary.LittleEndian
	r.DialectIndex = le.Uint16(w)
	r.SecurityMode = w[2]
	r.MaxBufferSize = le.Uint32(w[7:])
	r.Capabilities = le.Uint32(w[19:])
	b := cmd.Bytes
	if r.Capabilities&SMB1CapExtSecurity != 0 {
		if len(b) >= 16 {
			r.SecurityBlob = b[16:]
		}
		return nil
	}
	if n := int(w[33]); n <= len(b) {
		r.Challenge = b[:n]
	}
	return nil
}

// SMB1SessionSetup is a SESSION_SETUP_ANDX request in one of its forms:
// extended security (12 words, MS-SMB 2.2.4.6.1) carries SecurityBlob; NT
// LM 0.12 (13 words, MS-CIFS 2.2.4.53.1) and pre-NT (10 words) carry the
// challenge responses and the account in clear.
type SMB1SessionSetup struct {
	Extended      bool
	MaxBufferSize uint16
	Capabilities  uint32
	SecurityBlob  []byte // aliases msg
	// OEMPassword (LM or LMv2 response) and UnicodePassword (NTLM or NTLMv2
	// response) alias msg.
	OEMPassword, UnicodePassword []byte
	Account, Domain              string
	NativeOS, NativeLanMan       string
}

// ParseSMB1SessionSetupRequest decodes a SESSION_SETUP_ANDX request.
func ParseSMB1SessionSetupRequest(msg []byte, h *SMB1Header, cmd *SMB1Command, s *SMB1SessionSetup) error {
	*s = SMB1SessionSetup{}
	le := binary.LittleEndian
	w := cmd.Words
	uni := h.Unicode()
	end := cmd.bytesEnd()
	switch len(w) / 2 {
	case 12:
		s.Extended = true
		s.MaxBufferSize = le.Uint16(w[4:])
		s.Capabilities = le.Uint32(w[20:])
		n := int(le.Uint16(w[14:]))
		if n > len(cmd.Bytes) {
			return errAt(layerSMB1, cmd.BytesOffset, ErrTruncated, "security blob of %d bytes in %d", n, len(cmd.Bytes))
		}
		s.SecurityBlob = cmd.Bytes[:n]
		off := cmd.BytesOffset + n
		s.NativeOS, off = smb1String(msg, off, end, uni)
		s.NativeLanMan, _ = smb1String(msg, off, end, uni)
		return nil
	case 13:
		s.MaxBufferSize = le.Uint16(w[4:])
		s.Capabilities = le.Uint32(w[22:])
		n1, n2 := int(le.Uint16(w[14:])), int(le.Uint16(w[16:]))
		if n1+n2 > len(cmd.Bytes) {
			return errAt(layerSMB1, cmd.BytesOffset, ErrTruncated, "passwords of %d+%d bytes in %d", n1, n2, len(cmd.Bytes))
		}
		s.OEMPassword = cmd.Bytes[:n1]
		s.UnicodePassword = cmd.Bytes[n1 : n1+n2]
		// Strings are Unicode only if the client negotiated CAP_UNICODE and
		// says so in Flags2; the pad before them aligns the first one.
		off := cmd.BytesOffset + n1 + n2
		s.Account, off = smb1String(msg, off, end, uni)
		s.Domain, off = smb1String(msg, off, end, uni)
		s.NativeOS, off = smb1String(msg, off, end, uni)
		s.NativeLanMan, _ = smb1String(msg, off, end, uni)
		return nil
	case 10:
		s.MaxBufferSize = le.Uint16(w[4:])
		n := int(le.Uint16(w[14:]))
		if n > len(cmd.Bytes) {
			return errAt(layerSMB1, cmd.BytesOffset, ErrTruncated, "password of %d bytes in %d", n, len(cmd.Bytes))
		}
		s.OEMPassword = cmd.Bytes[:n]
		off := cmd.BytesOffset + n
		s.Account, off = smb1String(msg, off, end, uni)
		s.Domain, off = smb1String(msg, off, end, uni)
		s.NativeOS, off = smb1String(msg, off, end, uni)
		s.NativeLanMan, _ = smb1String(msg, off, end, uni)
		return nil
	}
	return errAt(layerSMB1, cmd.Offset, ErrMalformed, "session setup request with %d words", len(w)/2)
}

// SMB1SessionSetupResponse is a SESSION_SETUP_ANDX response.
type SMB1SessionSetupResponse struct {
	Action       uint16 // bit 0: logged on as guest
	SecurityBlob []byte // extended security only; aliases msg
	NativeOS     string
	NativeLanMan string
	Domain       string
}

// ParseSMB1SessionSetupResponse decodes a SESSION_SETUP_ANDX response
// (4 words with extended security, else 3).
func ParseSMB1SessionSetupResponse(msg []byte, h *SMB1Header, cmd *SMB1Command, r *SMB1SessionSetupResponse) error {
	*r = SMB1SessionSetupResponse{}
	le := binary.LittleEndian
	w := cmd.Words
	uni := h.Unicode()
	end := cmd.bytesEnd()
	off := cmd.BytesOffset
	switch len(w) / 2 {
	case 4:
		n := int(le.Uint16(w[6:]))
		if n > len(cmd.Bytes) {
			return errAt(layerSMB1, cmd.BytesOffset, ErrTruncated, "security blob of %d bytes in %d", n, len(cmd.Bytes))
		}
		r.SecurityBlob = cmd.Bytes[:n]
		off += n
	case 3:
	default:
		return errAt(layerSMB1, cmd.Offset, ErrMalformed, "session setup response with %d words", len(w)/2)
	}
	r.Action = le.Uint16(w[4:])
	r.NativeOS, off = smb1String(msg, off, end, uni)
	r.NativeLanMan, off = smb1String(msg, off, end, uni)
	r.Domain, _ = smb1String(msg, off, end, uni)
	return nil
}

// ParseSMB1TreeConnectRequest returns the UNC path and the service of a
// TREE_CONNECT_ANDX request (MS-CIFS 2.2.4.55.1).
func ParseSMB1TreeConnectRequest(msg []byte, h *SMB1Header, cmd *SMB1Command) (path, service string, err error) {
	w, err := cmd.words(4)
	if err != nil {
		return "", "", err
	}
	n := int(binary.LittleEndian.Uint16(w[6:]))
	if n > len(cmd.Bytes) {
		return "", "", errAt(layerSMB1, cmd.BytesOffset, ErrTruncated, "password of %d bytes in %d", n, len(cmd.Bytes))
	}
	end := cmd.bytesEnd()
	path, off := smb1String(msg, cmd.BytesOffset+n, end, h.Unicode())
	service, _ = smb1String(msg, off, end, false) // always OEM
	return path, service, nil
}

// ParseSMB1TreeConnectResponse returns the service of a TREE_CONNECT_ANDX
// response: "IPC" for named pipes, "A:" for disks.
func ParseSMB1TreeConnectResponse(msg []byte, cmd *SMB1Command) (string, error) {
	if _, err := cmd.words(3); err != nil {
		return "", err
	}
	s, _ := smb1String(msg, cmd.BytesOffset, cmd.bytesEnd(), false)
	return s, nil
}

// SMB1CreateRequest is an NT_CREATE_ANDX request (MS-CIFS 2.2.4.64.1) or,
// with the fields it has, an OPEN_ANDX request.
type SMB1CreateRequest struct {
	Flags             uint32
	RootFID           uint32
	DesiredAccess     uint32
	ExtFileAttributes uint32
	ShareAccess       uint32
	CreateDisposition uint32
	CreateOptions     uint32
	Name              string
	// OPEN_ANDX only (MS-CIFS 2.2.4.41.1).
	AccessMode, OpenMode uint16
}

// ParseSMB1NTCreateRequest decodes an NT_CREATE_ANDX request.
func ParseSMB1NTCreateRequest(msg []byte, h *SMB1Header, cmd *SMB1Command, c *SMB1CreateRequest) error {
	*c = SMB1CreateRequest{}
	w, err := cmd.words(24)
	if err != nil {
		return err
	}
	le := binary.LittleEndian
	n := int(le.Uint16(w[5:]))
	c.Flags = le.Uint32(w[7:])
	c.RootFID = le.Uint32(w[11:])
	c.DesiredAccess = le.Uint32(w[15:])
	c.ExtFileAttributes = le.Uint32(w[27:])
	c.ShareAccess = le.Uint32(w[31:])
	c.CreateDisposition = le.Uint32(w[35:])
	c.CreateOptions = le.Uint32(w[39:])
	off := cmd.BytesOffset
	if h.Unicode() && off%2 == 1 {
		off++ // pad: Unicode names are 2-aligned from the header
	}
	end := cmd.bytesEnd()
	if off > end {
		return errAt(layerSMB1, off, ErrTruncated, "file name beyond bytes")
	}
	// NameLength sometimes counts the terminator and sometimes a name
	// runs short of it; the terminator or the bytes end it.
	name := msg[off:min(off+n, end)]
	if h.Unicode() {
		for i := 0; i+1 < len(name); i += 2 {
			if name[i] == 0 && name[i+1] == 0 {
				name = name[:i]
				break
			}
		}
		c.Name = UTF16String(name)
	} else {
		if i := bytes.IndexByte(name, 0); i >= 0 {
			name = name[:i]
		}
		c.Name = oemString(name)
	}
	return nil
}

// ParseSMB1OpenRequest decodes an OPEN_ANDX request: Name, AccessMode,
// OpenMode and Flags are set.
func ParseSMB1OpenRequest(msg []byte, h *SMB1Header, cmd *SMB1Command, c *SMB1CreateRequest) error {
	*c = SMB1CreateRequest{}
	w, err := cmd.words(15)
	if err != nil {
		return err
	}
	le := binary.LittleEndian
	c.Flags = uint32(le.Uint16(w[4:]))
	c.AccessMode = le.Uint16(w[6:])
	c.OpenMode = le.Uint16(w[16:])
	c.Name, _ = smb1String(msg, cmd.BytesOffset, cmd.bytesEnd(), h.Unicode())
	return nil
}

// SMB1CreateResponse is what the sensor uses of NT_CREATE_ANDX and
// OPEN_ANDX responses.
type SMB1CreateResponse struct {
	FID          uint16
	CreateAction uint32 // OPEN_ANDX: the Action word
	EndOfFile    uint64 // OPEN_ANDX: DataSize
	FileType     uint16 // SMB1FileType*
	Directory    bool
}

// Pipe reports whether the opened resource is a named pipe.
func (r *SMB1CreateResponse) Pipe() bool {
	return r.FileType == SMB1FileTypeByteModePipe || r.FileType == SMB1FileTypeMessageModePipe
}

// ParseSMB1NTCreateResponse decodes an NT_CREATE_ANDX response, plain (34
// words) or extended (MS-SMB 2.2.4.9.2: WordCount says 42 while 50 follow).
func ParseSMB1NTCreateResponse(cmd *SMB1Command, r *SMB1CreateResponse) error {
	*r = SMB1CreateResponse{}
	w, err := cmd.words(34)
	if err != nil {
		return err
	}
	le := binary.LittleEndian
	r.FID = le.Uint16(w[5:])
	r.CreateAction = le.Uint32(w[7:])
	r.EndOfFile = le.Uint64(w[55:])
	r.FileType = le.Uint16(w[63:])
	r.Directory = w[67] != 0
	return nil
}

// ParseSMB1OpenResponse decodes an OPEN_ANDX response (MS-CIFS 2.2.4.41.2).
func ParseSMB1OpenResponse(cmd *SMB1Command, r *SMB1CreateResponse) error {
	*r = SMB1CreateResponse{}
	w, err := cmd.words(15)
	if err != nil {
		return err
	}
	le := binary.LittleEndian
	r.FID = le.Uint16(w[4:])
	r.EndOfFile = uint64(le.Uint32(w[12:]))
	r.FileType = le.Uint16(w[18:])
	r.CreateAction = uint32(le.Uint16(w[22:]))
	return nil
}

// SMB1Write is a WRITE_ANDX request (MS-CIFS 2.2.4.43.1, MS-SMB 2.2.4.3.1).
type SMB1Write struct {
	FID       uint16
	Offset    uint64
	WriteMode uint16
	Remaining uint16
	// DataOffset (from the header start) and DataLength locate the data,
	// which may lie beyond a message the caller holds only the head of.
	DataOffset, DataLength int
}

// ParseSMB1WriteRequest decodes a WRITE_ANDX request (12 or 14 words).
func ParseSMB1WriteRequest(cmd *SMB1Command, wr *SMB1Write) error {
	*wr = SMB1Write{}
	w, err := cmd.words(12)
	if err != nil {
		return err
	}
	le := binary.LittleEndian
	wr.FID = le.Uint16(w[4:])
	wr.Offset = uint64(le.Uint32(w[6:]))
	if len(w) >= 28 {
		wr.Offset |= uint64(le.Uint32(w[24:])) << 32
	}
	wr.WriteMode = le.Uint16(w[14:])
	wr.Remaining = le.Uint16(w[16:])
	wr.DataLength = int(le.Uint16(w[18:]))<<16 | int(le.Uint16(w[20:]))
	wr.DataOffset = int(le.Uint16(w[22:]))
	return nil
}

// Data returns the written bytes inside msg.
func (wr *SMB1Write) Data(msg []byte) ([]byte, error) {
	return smb1Buf(msg, wr.DataOffset, wr.DataLength)
}

// PipeData returns the bytes written into a named pipe: a raw-mode write
// that starts a message carries the message length in its first two bytes
// (MS-CIFS 2.2.4.43.1 WriteMode), which is not pipe data.
func (wr *SMB1Write) PipeData(msg []byte) ([]byte, error) {
	d, err := wr.Data(msg)
	if err != nil {
		return nil, err
	}
	if wr.WriteMode&(SMB1WriteRawMode|SMB1WriteMessageStart) == SMB1WriteRawMode|SMB1WriteMessageStart {
		if len(d) < 2 {
			return nil, errAt(layerSMB1, wr.DataOffset, ErrTruncated, "raw message start without its length")
		}
		d = d[2:]
	}
	return d, nil
}

// ParseSMB1ReadRequest returns the handle, offset and the most bytes asked
// for by a READ_ANDX request (10 or 12 words).
func ParseSMB1ReadRequest(cmd *SMB1Command) (fid uint16, offset uint64, max uint32, err error) {
	w, err := cmd.words(10)
	if err != nil {
		return 0, 0, 0, err
	}
	le := binary.LittleEndian
	fid = le.Uint16(w[4:])
	offset = uint64(le.Uint32(w[6:]))
	if len(w) >= 24 {
		offset |= uint64(le.Uint32(w[20:])) << 32
	}
	max = uint32(le.Uint16(w[10:]))
	// MaxCountHigh (MS-SMB 2.2.4.2.1) shares the Timeout field; only its
	// low word counts and all-ones means it is a timeout.
	if hi := le.Uint16(w[14:]); hi != 0xffff {
		max |= uint32(hi) << 16
	}
	return fid, offset, max, nil
}

// ParseSMB1ReadResponse returns the data offset (from the header start) and
// length of a READ_ANDX response; the data may lie beyond msg when the
// caller holds only the message's head.
func ParseSMB1ReadResponse(cmd *SMB1Command) (off, n int, err error) {
	w, err := cmd.words(12)
	if err != nil {
		return 0, 0, err
	}
	le := binary.LittleEndian
	n = int(le.Uint16(w[14:]))<<16 | int(le.Uint16(w[10:]))
	return int(le.Uint16(w[12:])), n, nil
}

// SMB1Trans is a TRANSACTION or TRANSACTION2 request or response, primary
// or secondary (MS-CIFS 2.2.4.33, 2.2.4.34, 2.2.4.46). Setup, Params and
// Data alias msg.
type SMB1Trans struct {
	TotalParamCount, TotalDataCount int
	ParamDisplacement               int
	DataDisplacement                int
	Setup                           []byte
	Name                            string // TRANSACTION requests: "\PIPE\"
	Params, Data                    []byte
}

// SetupWord returns setup word i.
func (t *SMB1Trans) SetupWord(i int) (uint16, bool) {
	if i < 0 || 2*i+2 > len(t.Setup) {
		return 0, false
	}
	return binary.LittleEndian.Uint16(t.Setup[2*i:]), true
}

// ParseSMB1TransRequest decodes a TRANSACTION or TRANSACTION2 primary
// request.
func ParseSMB1TransRequest(msg []byte, h *SMB1Header, cmd *SMB1Command, t *SMB1Trans) error {
	*t = SMB1Trans{}
	w, err := cmd.words(14)
	if err != nil {
		return err
	}
	le := binary.LittleEndian
	sc := int(w[26])
	if 28+2*sc > len(w) {
		return errAt(layerSMB1, cmd.Offset+1+26, ErrTruncated, "%d setup words beyond %d words", sc, len(w)/2)
	}
	t.Setup = w[28 : 28+2*sc]
	t.TotalParamCount, t.TotalDataCount = int(le.Uint16(w[0:])), int(le.Uint16(w[2:]))
	if t.Params, err = smb1Buf(msg, int(le.Uint16(w[20:])), int(le.Uint16(w[18:]))); err != nil {
		return err
	}
	if t.Data, err = smb1Buf(msg, int(le.Uint16(w[24:])), int(le.Uint16(w[22:]))); err != nil {
		return err
	}
	if cmd.Command == SMB1Transaction {
		t.Name, _ = smb1String(msg, cmd.BytesOffset, cmd.bytesEnd(), h.Unicode())
	}
	return nil
}

// ParseSMB1TransSecondary decodes a TRANSACTION_SECONDARY request (8
// words) or a TRANSACTION2_SECONDARY one (9: it adds the FID).
func ParseSMB1TransSecondary(msg []byte, cmd *SMB1Command, t *SMB1Trans) error {
	*t = SMB1Trans{}
	w, err := cmd.words(8)
	if err != nil {
		return err
	}
	le := binary.LittleEndian
	t.TotalParamCount, t.TotalDataCount = int(le.Uint16(w[0:])), int(le.Uint16(w[2:]))
	t.ParamDisplacement = int(le.Uint16(w[8:]))
	t.DataDisplacement = int(le.Uint16(w[14:]))
	if t.Params, err = smb1Buf(msg, int(le.Uint16(w[6:])), int(le.Uint16(w[4:]))); err != nil {
		return err
	}
	t.Data, err = smb1Buf(msg, int(le.Uint16(w[12:])), int(le.Uint16(w[10:])))
	return err
}

// ParseSMB1TransResponse decodes a TRANSACTION or TRANSACTION2 response.
// An interim response (no words: "send the rest") leaves t empty and
// returns interim true.
func ParseSMB1TransResponse(msg []byte, cmd *SMB1Command, t *SMB1Trans) (interim bool, err error) {
	*t = SMB1Trans{}
	if len(cmd.Words) == 0 {
		return true, nil
	}
	w, err := cmd.words(10)
	if err != nil {
		return false, err
	}
	le := binary.LittleEndian
	sc := int(w[18])
	if 20+2*sc > len(w) {
		return false, errAt(layerSMB1, cmd.Offset+1+18, ErrTruncated, "%d setup words beyond %d words", sc, len(w)/2)
	}
	t.Setup = w[20 : 20+2*sc]
	t.TotalParamCount, t.TotalDataCount = int(le.Uint16(w[0:])), int(le.Uint16(w[2:]))
	t.ParamDisplacement = int(le.Uint16(w[10:]))
	t.DataDisplacement = int(le.Uint16(w[16:]))
	if t.Params, err = smb1Buf(msg, int(le.Uint16(w[8:])), int(le.Uint16(w[6:]))); err != nil {
		return false, err
	}
	t.Data, err = smb1Buf(msg, int(le.Uint16(w[14:])), int(le.Uint16(w[12:])))
	return false, err
}

// SMB1SetDisposition reads a TRANSACTION2 SET_FILE_INFORMATION request that
// sets a file's delete disposition (SMB_SET_FILE_DISPOSITION_INFO 0x0102,
// or the pass-through FileDispositionInformation 1013). ok is false for
// any other request.
func SMB1SetDisposition(t *SMB1Trans) (fid uint16, deletePending, ok bool) {
	if sub, _ := t.SetupWord(0); sub != Trans2SetFileInformation || len(t.Params) < 4 || len(t.Data) < 1 {
		return 0, false, false
	}
	le := binary.LittleEndian
	switch le.Uint16(t.Params[2:]) {
	case 0x0102, 1013:
		return le.Uint16(t.Params), t.Data[0] != 0, true
	}
	return 0, false, false
}

// ParseSMB1Close returns the handle of a CLOSE request (MS-CIFS 2.2.4.5.1).
func ParseSMB1Close(cmd *SMB1Command) (uint16, error) {
	w, err := cmd.words(1)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint16(w), nil
}

// ParseSMB1DeleteRequest returns the file name of a DELETE request
// (MS-CIFS 2.2.4.7.1): BufferFormat 0x04, then the name.
func ParseSMB1DeleteRequest(msg []byte, h *SMB1Header, cmd *SMB1Command) (string, error) {
	if _, err := cmd.words(1); err != nil {
		return "", err
	}
	if len(cmd.Bytes) < 1 || cmd.Bytes[0] != 0x04 {
		return "", errAt(layerSMB1, cmd.BytesOffset, ErrMalformed, "delete without an ASCII buffer format")
	}
	name, _ := smb1String(msg, cmd.BytesOffset+1, cmd.bytesEnd(), h.Unicode())
	return name, nil
}
