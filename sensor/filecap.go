package sensor

// Open files and pipes are bounded per connection (MaxFiles) and per worker
// (MaxFilesTotal). Past a connection's bound its oldest handle is given up
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
	// Eviction reason of a handle past MaxFiles or MaxFilesTotal.
	evictOpenFile = "open_file"
)

type fileRef struct {
	s *smbState
	f *smbFile
}

// live says whether the handle is still open (a handle a CREATE response
// renamed is found under its new id).
func (r fileRef) live() bool { return r.s.files[fileKey{r.f.session, r.f.id}] == r.f }

// fileQueue orders open handles by opening, oldest first; entries of
// handles closed since are skipped and compacted away.
type fileQueue struct {
	q      []fileRef
	head   int
	pushes int
}

func (a *fileQueue) len() int { return len(a.q) - a.head }

func (a *fileQueue) push(r fileRef) {
	a.q = append(a.q, r)
	a.pushes++
}

func (a *fileQueue) pop() fileRef {
	r := a.q[a.head]
	a.q[a.head] = fileRef{}
	a.head++
	if a.head > 1024 && a.head > len(a.q)/2 {
		n := copy(a.q, a.q[a.head:])
		clear(a.q[n:])
		a.q, a.head = a.q[:n], 0
	}
	return r
}

func (a *fileQueue) compact() {
	out := a.q[:0]
	for i := a.head; i < len(a.q); i++ {
		if a.q[i].live() {
			out = append(out, a.q[i])
		}
	}
	clear(a.q[len(out):])
	a.q, a.head, a.pushes = out, 0, 0
}

// oldestExcept pops entries up to the oldest open handle other than keep
// and returns it.
func (a *fileQueue) oldestExcept(keep *smbFile) (fileRef, bool) {
	for a.len() > 0 {
		r := a.q[a.head]
		if r.f == keep {
			return fileRef{}, false
		}
		a.pop()
		if r.live() {
			return r, true
		}
	}
	return fileRef{}, false
}

// evictOldestFile closes the connection's oldest handle other than keep.
func (s *smbState) evictOldestFile(keep *smbFile) bool {
	r, ok := s.fileAge.oldestExcept(keep)
	if !ok {
		return false
	}
	s.c.env.stats.Evictions[evictOpenFile]++
	s.closeFile(r.f, false)
	return true
}

// admitFile queues a handle just opened and, past the worker's bound,
// closes one.
func (s *smbState) admitFile(f *smbFile) {
	s.fileAge.push(fileRef{s, f})
	if n := s.fileAge.len(); n > 2*len(s.files)+64 {
		s.fileAge.compact()
	}
	env := s.c.env
	a := env.filesAll
	a.push(fileRef{s, f})
	bound := env.opt.MaxFilesTotal
	if a.len() <= bound {
		return
	}
	if a.pushes >= bound/2 {
		a.compact()
		if a.len() <= bound {
			return
		}
	}
	s.c.anomaly("smb_too_many_files_total")
	if len(s.files) > fileFairShare {
		s.evictOldestFile(f)
		return
	}
	if r, ok := a.oldestExcept(f); ok {
		env.stats.Evictions[evictOpenFile]++
		r.s.closeFile(r.f, false)
	}
}
