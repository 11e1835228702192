package sensor

// Open files and pipes, and connected trees, are bounded per connection
// (MaxFiles) and per worker (MaxFilesTotal, each). Past a connection's bound its oldest handle is given up
// (reported as a close would report it) rather than the new one refused: a
// client that opened MaxFiles handles first would otherwise open
// \pipe\atsvc unseen. Past the worker's bound (2,000,000 handles over 500
// connections took 480 MB and 25 s) a connection holding more than its
// fair share gives up its own oldest, one holding fewer the worker's.

const (
	// fileCost is what an open handle costs (file, map entry, queues).
	fileCost = 256
	// fileShare: open handles may take 1/8 of a worker's budget.
	fileShare = 8
	// fileFairShare is what a connection keeps under pressure.
	fileFairShare = 8
	// Eviction reasons of a handle or a tree past MaxFiles or
	// MaxFilesTotal.
	evictOpenFile = "open_file"
	evictTree     = "connected_tree"
	evictSession  = "smb_session"
	// sessionCost is what a session costs with its setup in progress.
	sessionCost = 1024
)

// fileRef names an open handle, a connected tree (t set) or a session
// (ss set).
type fileRef struct {
	s  *smbState
	f  *smbFile
	t  *smbTree
	tk treeKey
	ss *smbSession
}

// live says whether the handle is still open (a handle a CREATE response
// renamed is found under its new id), or the tree still connected.
func (r fileRef) live() bool {
	if r.ss != nil {
		return r.s.sessions[r.ss.id] == r.ss
	}
	if r.t != nil {
		return r.s.trees[r.tk] == r.t
	}
	return r.s.files[fileKey{r.f.session, r.f.id}] == r.f
}

// drop closes the handle (reported as a close would be) or forgets the
// tree.
func (r fileRef) drop() {
	if r.ss != nil {
		delete(r.s.sessions, r.ss.id)
		return
	}
	if r.t != nil {
		delete(r.s.trees, r.tk)
		return
	}
	r.s.closeFile(r.f, false)
}

// fileQueue orders open handles by opening, oldest first; entries of
// handles closed since are skipped and compacted away. A connection's
// queues are lean (thousands of them), and so, as they always were, are
// the worker's.
type fileQueue struct{ boundQueue[fileRef] }

// own returns the queue of r's connection that holds it, and how many
// of its kind the connection holds.
func (r fileRef) own() (*fileQueue, int) {
	switch {
	case r.ss != nil:
		return &r.s.sessAge, len(r.s.sessions)
	case r.t != nil:
		return &r.s.treeAge, len(r.s.trees)
	}
	return &r.s.fileAge, len(r.s.files)
}

// oldestExcept pops entries up to the oldest open handle or tree other
// than keep and returns it.
func (a *fileQueue) oldestExcept(keep fileRef) (fileRef, bool) {
	for a.len() > 0 {
		r := a.q[a.head]
		if r.f == keep.f && r.t == keep.t && r.ss == keep.ss {
			return fileRef{}, false
		}
		a.take(giveRoom)
		if r.live() {
			return r, true
		}
	}
	return fileRef{}, false
}

// evictOldestFile closes the connection's oldest handle other than keep.
func (s *smbState) evictOldestFile(keep *smbFile) bool {
	return s.evictOldest(&s.fileAge, fileRef{f: keep}, evictOpenFile)
}

func (s *smbState) evictOldest(q *fileQueue, keep fileRef, reason string) bool {
	r, ok := q.oldestExcept(keep)
	if !ok {
		return false
	}
	s.c.env.stats.Evictions[reason]++
	r.drop()
	return true
}

// admitFile queues a handle just opened and, past the worker's bound,
// closes one.
func (s *smbState) admitFile(f *smbFile) {
	s.admit(fileRef{s: s, f: f}, &s.fileAge, len(s.files), &s.c.env.filesAll, s.c.env.opt.MaxFilesTotal, "smb_too_many_files_total", evictOpenFile)
}

// addTree records a connected tree; past --max-files trees on the
// connection its oldest is forgotten for it (it was refused, as handles
// were), and past the worker's bound one goes as a handle would.
func (s *smbState) addTree(k treeKey, t *smbTree) {
	if len(s.trees) >= s.c.env.opt.MaxFiles {
		s.c.anomaly("smb_too_many_trees")
		if !s.evictOldest(&s.treeAge, fileRef{}, evictTree) {
			return
		}
	}
	s.trees[k] = t
	s.admit(fileRef{s: s, t: t, tk: k}, &s.treeAge, len(s.trees), &s.c.env.treesAll, s.c.env.opt.MaxFilesTotal, "smb_too_many_trees_total", evictTree)
}

// admitSession queues a session just created and, past the worker's bound
// (MaxSessionsTotal: 2,000,000 SESSION_SETUPs of sessions of their own took
// 1.8 GB), forgets one.
func (s *smbState) admitSession(ss *smbSession) {
	s.admit(fileRef{s: s, ss: ss}, &s.sessAge, len(s.sessions), &s.c.env.sessionsAll, s.c.env.opt.MaxSessionsTotal, "smb_too_many_sessions_total", evictSession)
}

// admit queues r in the connection's queue own (holding n) and the
// worker's all, and past the worker's bound drops one (admitBounded).
func (s *smbState) admit(r fileRef, own *fileQueue, n int, all *fileQueue, bound int, anomaly, reason string) {
	own.push(r)
	if own.len() > 2*n+64 {
		own.compact(fileRef.live, giveRoom)
	}
	dropOld := func(old fileRef) {
		s.c.env.stats.Evictions[reason]++
		old.drop()
		// The victim's connection may be idle: its queue is compacted
		// here or it would keep an entry for everything it ever held.
		if q, n := old.own(); q.len() > 2*n+64 {
			q.compact(fileRef.live, giveRoom)
		}
	}
	if admitBounded(&all.boundQueue, r, bound, fileRef.live, giveRoom, n, fileFairShare,
		func() { s.evictOldest(own, r, reason) }, dropOld) {
		s.c.anomaly(anomaly)
	}
}
