package dissect

import "encoding/binary"

// SMB2 commands (MS-SMB2 2.2.1.2).
const (
	SMB2Negotiate      = 0x00
	SMB2SessionSetup   = 0x01
	SMB2Logoff         = 0x02
	SMB2TreeConnect    = 0x03
	SMB2TreeDisconnect = 0x04
	SMB2Create         = 0x05
	SMB2Close          = 0x06
	SMB2Flush          = 0x07
	SMB2Read           = 0x08
	SMB2Write          = 0x09
	SMB2Lock           = 0x0a
	SMB2IOCTL          = 0x0b
	SMB2Cancel         = 0x0c
	SMB2Echo           = 0x0d
	SMB2QueryDirectory = 0x0e
	SMB2ChangeNotify   = 0x0f
	SMB2QueryInfo      = 0x10
	SMB2SetInfo        = 0x11
	SMB2OplockBreak    = 0x12

	SMB2HeaderLen        = 64
	SMB2TransformLen     = 52
	SMB2FlagResponse     = 0x00000001
	SMB2FlagAsync        = 0x00000002
	SMB2FlagRelated      = 0x00000004
	SMB2FlagSigned       = 0x00000008
	FSCTLPipeTransceive  = 0x0011c017
	StatusPending        = 0x00000103
	StatusBufferOverflow = 0x80000005
	ShareTypeDisk        = 1
	ShareTypePipe        = 2
	ShareTypePrint       = 3
	FileDeleteOnClose    = 0x00001000
	DeleteAccess         = 0x00010000
	FileWriteData        = 0x00000002
	FileAppendData       = 0x00000004
	GenericWrite         = 0x40000000
	GenericAll           = 0x10000000
	MaximumAllowed       = 0x02000000
	FileReadData         = 0x00000001
	GenericRead          = 0x80000000
)

// Protocol magics at the start of an SMB message.
var (
	magicSMB1      = [4]byte{0xff, 'S', 'M', 'B'}
	magicSMB2      = [4]byte{0xfe, 'S', 'M', 'B'}
	magicTransform = [4]byte{0xfd, 'S', 'M', 'B'}
	magicCompress  = [4]byte{0xfc, 'S', 'M', 'B'}
)

// SMBKind classifies a message by its protocol magic.
type SMBKind uint8

const (
	SMBNone SMBKind = iota
	SMBKind1
	SMBKind2
	SMBKindTransform
	SMBKindCompressed
)

// ClassifySMB returns which SMB protocol a message starts with.
func ClassifySMB(b []byte) SMBKind {
	if len(b) < 4 {
		return SMBNone
	}
	m := [4]byte(b[:4])
	switch m {
	case magicSMB2:
		return SMBKind2
	case magicSMB1:
		return SMBKind1
	case magicTransform:
		return SMBKindTransform
	case magicCompress:
		return SMBKindCompressed
	}
	return SMBNone
}

// SMB2Header is the sync or async SMB2 packet header.
type SMB2Header struct {
	CreditCharge uint16
	Status       uint32
	Command      uint16
	Flags        uint32
	NextCommand  uint32
	MessageID    uint64
	AsyncID      uint64
	TreeID       uint32
	SessionID    uint64
}

// Response reports whether the header is a server response.
func (h *SMB2Header) Response() bool { return h.Flags&SMB2FlagResponse != 0 }

// DecodeSMB2Header decodes the header at the start of b.
func DecodeSMB2Header(b []byte, h *SMB2Header) error {
	if len(b) < SMB2HeaderLen {
		return errAt("smb2", len(b), ErrTruncated, "header needs %d bytes", SMB2HeaderLen)
	}
	if [4]byte(b[:4]) != magicSMB2 || binary.LittleEndian.Uint16(b[4:]) != SMB2HeaderLen {
		return errAt("smb2", 0, ErrMalformed, "bad protocol id or structure size")
	}
	le := binary.LittleEndian
	h.CreditCharge = le.Uint16(b[6:])
	h.Status = le.Uint32(b[8:])
	h.Command = le.Uint16(b[12:])
	h.Flags = le.Uint32(b[16:])
	h.NextCommand = le.Uint32(b[20:])
	h.MessageID = le.Uint64(b[24:])
	if h.Flags&SMB2FlagAsync != 0 {
		h.AsyncID = le.Uint64(b[32:])
		h.TreeID = 0
	} else {
		h.AsyncID = 0
		h.TreeID = le.Uint32(b[36:])
	}
	h.SessionID = le.Uint64(b[40:])
	return nil
}

// FileID is an SMB2 file handle (persistent and volatile parts).
type FileID [16]byte

// AllOnes reports the "use the handle of the previous compound operation"
// sentinel (MS-SMB2 3.2.4.1.4).
func (f FileID) AllOnes() bool {
	for _, c := range f {
		if c != 0xff {
			return false
		}
	}
	return true
}

// smb2Body checks the body's StructureSize and minimum length.
func smb2Body(msg []byte, want uint16, minLen int) ([]byte, error) {
	if len(msg) < SMB2HeaderLen+minLen {
		return nil, errAt("smb2", len(msg), ErrTruncated, "body needs %d bytes", minLen)
	}
	b := msg[SMB2HeaderLen:]
	if got := binary.LittleEndian.Uint16(b); got&^1 != want&^1 {
		return nil, errAt("smb2", SMB2HeaderLen, ErrMalformed, "structure size %d, want %d", got, want)
	}
	return b, nil
}

// smb2Buf returns msg[off:off+n] where off is relative to the header start.
func smb2Buf(msg []byte, off, n int) ([]byte, error) {
	if n == 0 {
		return nil, nil
	}
	if off < 0 || n < 0 || off > len(msg) || n > len(msg)-off {
		// The offset reported is where the input ran out (or the claimed
		// start, when that lies inside it), never a point beyond the input.
		return nil, errAt("smb2", min(max(off, 0), len(msg)), ErrTruncated, "buffer of %d bytes at %d beyond message of %d", n, off, len(msg))
	}
	return msg[off : off+n], nil
}

// NegotiateResponse carries the chosen dialect (MS-SMB2 2.2.4).
func NegotiateResponse(msg []byte) (dialect uint16, err error) {
	b, err := smb2Body(msg, 65, 64)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint16(b[4:]), nil
}

// NegotiateResponseCipher returns the cipher chosen in an SMB 3.1.1
// negotiate response's encryption context, or 0.
func NegotiateResponseCipher(msg []byte) uint16 {
	b, err := smb2Body(msg, 65, 64)
	if err != nil {
		return 0
	}
	le := binary.LittleEndian
	n := int(le.Uint16(b[6:]))
	off := int(le.Uint32(b[60:]))
	for i := 0; i < n && i < 32; i++ {
		if off < 0 || off+8 > len(msg) {
			return 0
		}
		typ, dl := le.Uint16(msg[off:]), int(le.Uint16(msg[off+2:]))
		if off+8+dl > len(msg) {
			return 0
		}
		if typ == 2 && dl >= 4 { // SMB2_ENCRYPTION_CAPABILITIES
			return le.Uint16(msg[off+10:])
		}
		off = (off + 8 + dl + 7) &^ 7
	}
	return 0
}

// SessionSetupBlob returns the security buffer of a session setup request or
// response (MS-SMB2 2.2.5, 2.2.6).
func SessionSetupBlob(msg []byte, response bool) ([]byte, error) {
	le := binary.LittleEndian
	if response {
		b, err := smb2Body(msg, 9, 8)
		if err != nil {
			return nil, err
		}
		return smb2Buf(msg, int(le.Uint16(b[4:])), int(le.Uint16(b[6:])))
	}
	b, err := smb2Body(msg, 25, 24)
	if err != nil {
		return nil, err
	}
	return smb2Buf(msg, int(le.Uint16(b[12:])), int(le.Uint16(b[14:])))
}

// TreeConnectPath returns the UNC path of a tree connect request.
func TreeConnectPath(msg []byte) (string, error) {
	b, err := smb2Body(msg, 9, 8)
	if err != nil {
		return "", err
	}
	le := binary.LittleEndian
	p, err := smb2Buf(msg, int(le.Uint16(b[4:])), int(le.Uint16(b[6:])))
	if err != nil {
		return "", err
	}
	return UTF16String(p), nil
}

// TreeConnectShareType returns the share type of a tree connect response.
func TreeConnectShareType(msg []byte) (uint8, error) {
	b, err := smb2Body(msg, 16, 16)
	if err != nil {
		return 0, err
	}
	return b[2], nil
}

// CreateRequest is the part of an SMB2 CREATE request the sensor uses.
type CreateRequest struct {
	DesiredAccess     uint32
	CreateDisposition uint32
	CreateOptions     uint32
	Name              string
}

// ParseCreateRequest decodes an SMB2 CREATE request (MS-SMB2 2.2.13).
func ParseCreateRequest(msg []byte, c *CreateRequest) error {
	b, err := smb2Body(msg, 57, 56)
	if err != nil {
		return err
	}
	le := binary.LittleEndian
	c.DesiredAccess = le.Uint32(b[24:])
	c.CreateDisposition = le.Uint32(b[36:])
	c.CreateOptions = le.Uint32(b[40:])
	name, err := smb2Buf(msg, int(le.Uint16(b[44:])), int(le.Uint16(b[46:])))
	if err != nil {
		return err
	}
	c.Name = UTF16String(name)
	return nil
}

// CreateResponseFileID returns the handle of an SMB2 CREATE response and the
// file's end-of-file size.
func CreateResponseFileID(msg []byte) (FileID, uint64, error) {
	b, err := smb2Body(msg, 89, 88)
	if err != nil {
		return FileID{}, 0, err
	}
	return FileID(b[64:80]), binary.LittleEndian.Uint64(b[48:]), nil
}

// CreateResponse is the part of an SMB2 CREATE response (MS-SMB2 2.2.14)
// that tells what was opened.
type CreateResponse struct {
	FileID     FileID
	EndOfFile  uint64
	Attributes uint32
	// Times: creation, last access, last write, change (FILETIME).
	Times [4]uint64
}

// FileAttributeNormal is FILE_ATTRIBUTE_NORMAL (MS-FSCC 2.6).
const FileAttributeNormal = 0x80

// ParseCreateResponse decodes an SMB2 CREATE response's fixed part.
func ParseCreateResponse(msg []byte, r *CreateResponse) error {
	b, err := smb2Body(msg, 89, 88)
	if err != nil {
		return err
	}
	le := binary.LittleEndian
	for i := range r.Times {
		r.Times[i] = le.Uint64(b[8+8*i:])
	}
	r.EndOfFile = le.Uint64(b[48:])
	r.Attributes = le.Uint32(b[56:])
	r.FileID = FileID(b[64:80])
	return nil
}

// PipeLike reports whether the response looks like the opening of a named
// pipe: servers answer a pipe with no timestamps at all (a file system
// object always has some) and FILE_ATTRIBUTE_NORMAL alone (Windows, Samba).
func (r *CreateResponse) PipeLike() bool {
	return r.Times == [4]uint64{} && r.Attributes == FileAttributeNormal
}

// NoTimes reports whether the response carries no timestamps: true of pipes,
// never of files or directories.
func (r *CreateResponse) NoTimes() bool { return r.Times == [4]uint64{} }

// CloseFileID returns the handle of an SMB2 CLOSE request.
func CloseFileID(msg []byte) (FileID, error) {
	b, err := smb2Body(msg, 24, 24)
	if err != nil {
		return FileID{}, err
	}
	return FileID(b[8:24]), nil
}

// ReadRequest returns the handle and length of an SMB2 READ request.
func ReadRequest(msg []byte) (FileID, uint32, error) {
	b, err := smb2Body(msg, 49, 48)
	if err != nil {
		return FileID{}, 0, err
	}
	return FileID(b[16:32]), binary.LittleEndian.Uint32(b[4:]), nil
}

// ReadResponseData returns the data offset (from the header start) and
// length of an SMB2 READ response. The data may lie beyond msg when the
// caller only holds the message's first part.
func ReadResponseData(msg []byte) (off, n int, err error) {
	b, err := smb2Body(msg, 17, 16)
	if err != nil {
		return 0, 0, err
	}
	return int(b[2]), int(binary.LittleEndian.Uint32(b[4:])), nil
}

// WriteRequest returns the handle, data offset (from the header start) and
// length of an SMB2 WRITE request.
func WriteRequest(msg []byte) (fid FileID, off, n int, err error) {
	b, err := smb2Body(msg, 49, 48)
	if err != nil {
		return FileID{}, 0, 0, err
	}
	le := binary.LittleEndian
	return FileID(b[16:32]), int(le.Uint16(b[2:])), int(le.Uint32(b[4:])), nil
}

// IOCTLMessage is an SMB2 IOCTL request or response.
type IOCTLMessage struct {
	CtlCode uint32
	FileID  FileID
	// Input and Output alias msg (nil when absent).
	Input, Output []byte
}

// ParseIOCTL decodes an SMB2 IOCTL request or response (MS-SMB2 2.2.31, 2.2.32).
func ParseIOCTL(msg []byte, response bool, m *IOCTLMessage) error {
	want := uint16(57)
	if response {
		want = 49
	}
	b, err := smb2Body(msg, want, 48)
	if err != nil {
		return err
	}
	le := binary.LittleEndian
	m.CtlCode = le.Uint32(b[4:])
	m.FileID = FileID(b[8:24])
	m.Input, err = smb2Buf(msg, int(le.Uint32(b[24:])), int(le.Uint32(b[28:])))
	if err != nil {
		return err
	}
	if response {
		m.Output, err = smb2Buf(msg, int(le.Uint32(b[32:])), int(le.Uint32(b[36:])))
	} else {
		m.Output, err = smb2Buf(msg, int(le.Uint32(b[36:])), int(le.Uint32(b[40:])))
	}
	return err
}

// SetInfoRequest is an SMB2 SET_INFO request (MS-SMB2 2.2.39).
type SetInfoRequest struct {
	InfoType, InfoClass uint8
	FileID              FileID
	Buffer              []byte
}

// ParseSetInfo decodes an SMB2 SET_INFO request.
func ParseSetInfo(msg []byte, s *SetInfoRequest) error {
	b, err := smb2Body(msg, 33, 32)
	if err != nil {
		return err
	}
	le := binary.LittleEndian
	s.InfoType, s.InfoClass = b[2], b[3]
	s.FileID = FileID(b[16:32])
	s.Buffer, err = smb2Buf(msg, int(le.Uint16(b[8:])), int(le.Uint32(b[4:])))
	return err
}

// TransformHeader is an SMB3 TRANSFORM_HEADER (MS-SMB2 2.2.41).
type TransformHeader struct {
	OriginalSize uint32
	Flags        uint16
	SessionID    uint64
}

// DecodeTransform decodes the transform header at the start of b.
func DecodeTransform(b []byte, t *TransformHeader) error {
	if len(b) < SMB2TransformLen {
		return errAt("smb2", len(b), ErrTruncated, "transform header")
	}
	if [4]byte(b[:4]) != magicTransform {
		return errAt("smb2", 0, ErrMalformed, "bad transform protocol id")
	}
	le := binary.LittleEndian
	t.OriginalSize = le.Uint32(b[36:])
	t.Flags = le.Uint16(b[42:])
	t.SessionID = le.Uint64(b[44:])
	return nil
}

// DialectName renders an SMB2 dialect revision as "2.1", "3.1.1".
func DialectName(d uint16) string {
	switch d {
	case 0x0202:
		return "2.0.2"
	case 0x0210:
		return "2.1"
	case 0x0222:
		return "2.2.2"
	case 0x0224:
		return "2.2.4"
	case 0x0300:
		return "3.0"
	case 0x0302:
		return "3.0.2"
	case 0x0310:
		return "3.1.0"
	case 0x0311:
		return "3.1.1"
	case 0x02ff:
		return "2.???"
	}
	return ""
}
