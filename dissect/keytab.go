package dissect

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"github.com/oiweiwei/gokrb5.fork/v9/keytab"
)

// MIT keytab files (https://web.mit.edu/kerberos/krb5-devel/doc/formats/
// keytab_file_format.html): 0x05 0x02 (big-endian) or 0x05 0x01 (native
// byte order), then length-prefixed entries of principal, timestamp, kvno,
// key. ktutil, msktutil, `samba-tool domain exportkeytab`, ktpass and
// Wireshark all write 0x0502.

// MaxKeytabLen bounds a keytab file: a domain-wide export is a few hundred
// bytes per account, so 64 MiB is hundreds of thousands of accounts.
const MaxKeytabLen = 64 << 20

// ErrKeytab: the file is not a keytab (or is damaged). Its message never
// quotes the file, which is all secret.
var ErrKeytab = errors.New("not a valid keytab (format 0x0502 or 0x0501)")

// KeytabSkipped counts a keytab's entries that were not loaded, by reason.
type KeytabSkipped struct {
	UnsupportedEType int // DES, AES-SHA2, ...: not used by Windows domains
	BadKey           int // key length wrong for its type
}

// ParseKeytab reads the keys of a keytab file. Entries of encryption types
// this package cannot use are counted in skipped, not loaded. Errors never
// show the file's bytes.
func ParseKeytab(data []byte) (keys []KerberosKey, skipped KeytabSkipped, err error) {
	if len(data) > MaxKeytabLen {
		return nil, skipped, fmt.Errorf("keytab of %d bytes (limit %d): %w", len(data), MaxKeytabLen, ErrKeytab)
	}
	if len(data) < 2 || data[0] != 5 || (data[1] != 1 && data[1] != 2) {
		return nil, skipped, fmt.Errorf("keytab: bad file header: %w", ErrKeytab)
	}
	if err := keytabCheckFraming(data); err != nil {
		return nil, skipped, err
	}
	// gokrb5's parser quotes the whole input in its error messages: they
	// are dropped, and only ours (which name an entry, never a byte) shown.
	var kt keytab.Keytab
	if err := kt.Unmarshal(data); err != nil {
		return nil, skipped, fmt.Errorf("keytab: damaged entry: %w", ErrKeytab)
	}
	for i, e := range kt.Entries {
		if len(e.Principal.Components) == 0 {
			return nil, skipped, fmt.Errorf("keytab entry %d: empty principal: %w", i+1, ErrKeytab)
		}
		n := kerberosKeyLen(e.Key.KeyType)
		switch {
		case n == 0:
			skipped.UnsupportedEType++
			continue
		case len(e.Key.KeyValue) != n:
			skipped.BadKey++
			continue
		}
		kvno := e.KVNO
		if kvno == 0 {
			kvno = uint32(e.KVNO8)
		}
		keys = append(keys, KerberosKey{
			Principal: strings.Join(e.Principal.Components, "/"),
			Realm:     e.Principal.Realm,
			KVNO:      kvno,
			EType:     e.Key.KeyType,
			Source:    fmt.Sprintf("keytab entry %d", i+1),
			value:     e.Key.KeyValue,
		})
	}
	return keys, skipped, nil
}

// keytabCheckFraming walks the entry lengths before gokrb5 does: it skips
// holes (negative lengths) without checking they stay inside the file, and
// ignores principals it fails to parse.
func keytabCheckFraming(data []byte) error {
	var order binary.ByteOrder = binary.BigEndian
	if data[1] == 1 && nativeLittleEndian() {
		order = binary.LittleEndian
	}
	for off, i := 2, 1; off < len(data); i++ {
		if len(data)-off < 4 {
			return fmt.Errorf("keytab entry %d: truncated length: %w", i, ErrKeytab)
		}
		l := int64(int32(order.Uint32(data[off:])))
		off += 4
		switch {
		case l == 0:
			// End of entries (MIT stops at a zero length).
			return nil
		case l < 0:
			l = -l
		case l < 2+2+4+1+2+2: // principal count, realm length, timestamp, kvno, type, key length
			return fmt.Errorf("keytab entry %d: %d-byte entry: %w", i, l, ErrKeytab)
		}
		if l > int64(len(data)-off) {
			return fmt.Errorf("keytab entry %d: %d bytes past the end: %w", i, l-int64(len(data)-off), ErrKeytab)
		}
		off += int(l)
	}
	return nil
}

// nativeLittleEndian reports the byte order 0x0501 keytabs use on this
// machine (gokrb5 makes the same choice).
func nativeLittleEndian() bool {
	var b [2]byte
	binary.NativeEndian.PutUint16(b[:], 1)
	return b[0] == 1
}
