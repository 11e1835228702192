package dissect

import (
	"encoding/binary"
	"errors"
	"testing"
	"unicode/utf16"
)

// buildJob lays out a .job file after MS-TSCH 2.4: the fixed-length section,
// the running instance count, five counted strings, user and reserved data
// and one 48-byte trigger.
func buildJob(app, params, dir, author, comment string) []byte {
	le := binary.LittleEndian
	b := make([]byte, jobFixedLen)
	le.PutUint16(b[0:], 0x0601) // Windows 7
	le.PutUint16(b[2:], 1)
	copy(b[4:20], []byte{0x78, 0x56, 0x34, 0x12, 0x34, 0x12, 0x34, 0x12, 0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0})
	le.PutUint16(b[20:], jobFixedLen+2)
	le.PutUint32(b[32:], 0x20)    // NORMAL_PRIORITY_CLASS
	le.PutUint32(b[36:], 3600000) // one hour
	le.PutUint32(b[48:], 0x00000010)
	b = le.AppendUint16(b, 0) // running instance count
	for _, s := range []string{app, params, dir, author, comment} {
		u := utf16.Encode([]rune(s + "\x00"))
		b = le.AppendUint16(b, uint16(len(u)))
		for _, c := range u {
			b = le.AppendUint16(b, c)
		}
	}
	b = le.AppendUint16(b, 0)                             // user data
	b = append(le.AppendUint16(b, 8), make([]byte, 8)...) // reserved data (TASKRESERVED1)
	b = le.AppendUint16(b, 1)
	return append(b, make([]byte, 48)...)
}

func TestParseJobFile(t *testing.T) {
	b := buildJob(`C:\Windows\System32\cmd.exe`, `/c whoami > C:\Windows\Temp\o.txt`, `C:\Windows\Temp`, `LAB\alice`, "lab job")
	j, err := ParseJobFile(b)
	if err != nil {
		t.Fatal(err)
	}
	want := JobFile{ProductVersion: 0x0601, FileVersion: 1, UUID: "12345678-1234-1234-1234-56789abcdef0", Priority: 0x20,
		MaxRunTimeMS: 3600000, Flags: 0x10, ApplicationName: `C:\Windows\System32\cmd.exe`,
		Parameters: `/c whoami > C:\Windows\Temp\o.txt`, WorkingDirectory: `C:\Windows\Temp`, Author: `LAB\alice`,
		Comment: "lab job", Triggers: 1}
	if *j != want {
		t.Errorf("got  %+v\nwant %+v", *j, want)
	}
	// Every cut short of the trigger count is an error, never a panic; the
	// strings complete before the cut are kept.
	for n := 0; n < len(b)-48-1; n++ {
		j, err := ParseJobFile(b[:n])
		if !errors.Is(err, ErrTruncated) {
			t.Fatalf("cut at %d: %v", n, err)
		}
		if j != nil && n > 200 && j.ApplicationName == "" {
			t.Errorf("cut at %d lost the application name", n)
		}
	}
	bad := append([]byte(nil), b...)
	binary.LittleEndian.PutUint16(bad[2:], 2)
	if _, err := ParseJobFile(bad); !errors.Is(err, ErrMalformed) {
		t.Errorf("file version 2: %v", err)
	}
	bad = append([]byte(nil), b...)
	binary.LittleEndian.PutUint16(bad[70:], 0xffff)
	if _, err := ParseJobFile(bad); !errors.Is(err, ErrLimit) {
		t.Errorf("string of 65535 characters: %v", err)
	}
}

func FuzzJobFile(f *testing.F) {
	f.Add(buildJob("a.exe", "", "", "", ""))
	f.Add(buildJob(`C:\Windows\System32\cmd.exe`, "/c x", `C:\`, `LAB\alice`, "c"))
	f.Fuzz(func(t *testing.T, b []byte) {
		j, err := ParseJobFile(b)
		if err == nil && (j == nil || j.FileVersion != 1) {
			t.Fatalf("accepted %+v", j)
		}
	})
}
