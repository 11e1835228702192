package sensor

import (
	"errors"

	"github.com/tschsensor/tschsensor/dissect"
)

// pduProtection is what became of a request, response or fault PDU's
// per-message security.
type pduProtection struct {
	sealed bool   // the stub is sealed (PKT_PRIVACY)
	opened bool   // and was decrypted
	err    string // why a sealed stub stayed closed, for call.decrypt_error
}

// Offsets of the stub in connection-oriented PDUs (C706 12.6.4): the 16-byte
// common header, then alloc_hint, p_cont_id and opnum (request) or
// cancel_count (response); a fault adds its status and a reserved word.
const (
	requestStubOff  = dissect.DCERPCHeaderLen + 8
	objectUUIDLen   = 16
	responseStubOff = dissect.DCERPCHeaderLen + 8
	faultStubOff    = dissect.DCERPCHeaderLen + 16
)

// protect runs a request, response or fault PDU through the channel's
// security context as it arrives, whatever interface or call it belongs to:
// NTLM seals with one RC4 stream per direction (one for both without
// extended session security), so a PDU skipped because its call is not
// interesting, its response came early or it is a fault leaves every later
// one unreadable. Sealed PDUs come back opened in a copy (the input belongs
// to the reassembler); signed ones are checked and counted.
func (r *rpcChannel) protect(b []byte, fromClient bool) ([]byte, pduProtection) {
	t := &r.trailer
	if t.Value == nil {
		return b, pduProtection{}
	}
	st := r.c.env.stats
	ctx := r.auth.context(t.ContextID, false)
	switch t.Level {
	case dissect.AuthLevelPrivacy:
		st.Auth.SealedPDUs++
		p := pduProtection{sealed: true}
		if ctx == nil || ctx.protector == nil {
			if ctx != nil {
				p.err = ctx.keyErr
			}
			return b, p
		}
		off := stubOffset(&r.hdr)
		if off < 0 || off > t.Offset || t.Offset+8 > len(b) {
			st.Auth.UnsealFailures++
			r.c.anomaly("dcerpc_bad_auth_trailer")
			p.err = "auth verifier overlaps the PDU header"
			return b, p
		}
		r.scratch = append(r.scratch[:0], b...)
		q := r.scratch
		if err := ctx.protector.Unseal(fromClient, q, q[off:t.Offset], q[t.Offset+8:]); err != nil {
			st.Auth.UnsealFailures++
			r.c.anomaly(ctx.unsealAnomaly())
			p.err = err.Error()
			return b, p
		}
		ctx.countUnsealed(st)
		p.opened = true
		return q, p
	case dissect.AuthLevelIntegrity:
		if ctx == nil || ctx.protector == nil {
			return b, pduProtection{}
		}
		st.Auth.SignedPDUs++
		if err := ctx.protector.Verify(fromClient, b, b[t.Offset+8:]); err != nil {
			st.Auth.SignatureFailures++
			if errors.Is(err, dissect.ErrBadSignature) {
				r.c.anomaly("dcerpc_bad_signature")
			} else {
				r.c.anomaly("dcerpc_signature_unchecked")
			}
		}
	}
	return b, pduProtection{}
}

// stubOffset is where the stub of a request, response or fault starts, or -1
// for other PDU types.
func stubOffset(h *dissect.DCERPCHeader) int {
	switch h.PType {
	case dissect.PTypeRequest:
		if h.Flags&dissect.PFCObjectUUID != 0 {
			return requestStubOff + objectUUIDLen
		}
		return requestStubOff
	case dissect.PTypeResponse:
		return responseStubOff
	case dissect.PTypeFault:
		return faultStubOff
	}
	return -1
}
