package sensor

// smb1State is the SMB1 part of a connection's SMB state.
type smb1State struct {
	s *smbState
}

func newSMB1State(s *smbState) *smb1State { return &smb1State{s: s} }

func (m *smb1State) message(dir int, msg []byte) {
	if m.s.version == 0 {
		m.s.version = 1
	}
}
