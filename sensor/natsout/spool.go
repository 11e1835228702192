package natsout

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// The spool keeps records the NATS sink could not get acknowledged, in
// order, on disk, until they are re-sent. Layout of a spool directory:
//
//	00000000000000000001.seg   segment files, append-only, numbered in order
//	00000000000000000002.seg
//	cursor                     "tschsensor-spool v1 <segment> <offset>\n":
//	                           everything before it has been acknowledged
//	lock                       held (flock) while a sink uses the directory
//
// A segment is a sequence of frames:
//
//	u32 LE  payload length
//	u32 LE  CRC-32C of the payload
//	payload u8 version(1) | u8 len | kind | u16 LE len | subject |
//	        u16 LE len | id | data
//
// Durability (fsync policy): every Append is one write(2) straight to the
// segment, so a record survives the sensor process dying as soon as Append
// returns. Segments are fsynced when they are closed (rolled or at Close)
// and by Sync, which the sink calls at most once a second while spooling;
// a power loss can therefore lose up to about a second of spooled records.
// The cursor is rewritten (temp file + rename) on every Commit without
// fsync: losing an update only makes the sink re-send records that were
// already acknowledged, which JetStream drops as duplicates by Nats-Msg-Id.
// At open, each segment is scanned and cut at its first torn or corrupt
// frame.
const (
	spoolVersion      = 1
	spoolFrameHeader  = 8
	spoolMaxRecord    = 16 << 20 // larger than any NATS payload we may publish
	spoolMinSegment   = 1 << 20
	spoolMaxSegment   = 64 << 20
	spoolSegmentExt   = ".seg"
	spoolCursorFile   = "cursor"
	spoolCursorMagic  = "tschsensor-spool v1"
	spoolMaxKindLen   = 255
	spoolMaxStringLen = 65535
)

var (
	errSpoolFull    = errors.New("spool full")
	errSpoolClosed  = errors.New("spool closed")
	errSpoolCorrupt = errors.New("corrupt spool frame")
	crc32c          = crc32.MakeTable(crc32.Castagnoli)
)

// spoolRec is one record as kept in the spool: the full subject it is
// published on, its de-duplication id (may be empty) and its payload.
type spoolRec struct {
	Kind    string
	Subject string
	ID      string
	Data    []byte
}

// spoolPos is a position in the spool: a segment number and a byte offset.
type spoolPos struct {
	seg uint64
	off int64
}

// spool is safe for concurrent use: the sink appends from its Publish
// goroutine while the resender reads and commits.
type spool struct {
	mu      sync.Mutex
	dir     string
	max     int64 // bound on unacknowledged bytes
	segMax  int64
	lock    *os.File
	w       *os.File // current write segment
	wpos    spoolPos // end of data
	r       *os.File // segment being read, nil until needed
	rseg    uint64
	rpos    spoolPos // next frame to read
	ack     spoolPos // everything before it is acknowledged
	bytes   int64    // unacknowledged bytes (ack..wpos)
	records int64    // unacknowledged records
	rbytes  int64    // bytes read since the last Commit/Rewind
	rrecs   int64
	dirty   bool // appended since the last Sync
	closed  bool
	buf     []byte
	log     *slog.Logger
}

func spoolSegName(seg uint64) string {
	return fmt.Sprintf("%020d%s", seg, spoolSegmentExt)
}

// openSpool opens or creates the spool in dir, recovering what a previous
// run left unacknowledged. maxBytes bounds the unacknowledged bytes kept.
func openSpool(dir string, maxBytes int64, log *slog.Logger) (*spool, error) {
	if maxBytes <= 0 {
		return nil, fmt.Errorf("spool %s: max bytes must be positive, got %d", dir, maxBytes)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("spool: create dir: %w", err)
	}
	lock, err := spoolLock(filepath.Join(dir, "lock"))
	if err != nil {
		return nil, fmt.Errorf("spool %s: %w", dir, err)
	}
	sp := &spool{dir: dir, max: maxBytes, lock: lock, log: log}
	sp.segMax = min(max(maxBytes/8, spoolMinSegment), spoolMaxSegment)
	if err := sp.recover(); err != nil {
		lock.Close()
		return nil, fmt.Errorf("spool %s: %w", dir, err)
	}
	return sp, nil
}

func (sp *spool) segments() ([]uint64, error) {
	ents, err := os.ReadDir(sp.dir)
	if err != nil {
		return nil, fmt.Errorf("read dir: %w", err)
	}
	var segs []uint64
	for _, e := range ents {
		name := e.Name()
		if !strings.HasSuffix(name, spoolSegmentExt) {
			continue
		}
		n, err := strconv.ParseUint(strings.TrimSuffix(name, spoolSegmentExt), 10, 64)
		if err != nil || n == 0 {
			continue
		}
		segs = append(segs, n)
	}
	sort.Slice(segs, func(i, j int) bool { return segs[i] < segs[j] })
	return segs, nil
}

func (sp *spool) readCursor() (spoolPos, error) {
	b, err := os.ReadFile(filepath.Join(sp.dir, spoolCursorFile))
	if errors.Is(err, os.ErrNotExist) {
		return spoolPos{}, nil
	}
	if err != nil {
		return spoolPos{}, fmt.Errorf("read cursor: %w", err)
	}
	var pos spoolPos
	var magic1, magic2 string
	if _, err := fmt.Sscanf(string(b), "%s %s %d %d\n", &magic1, &magic2, &pos.seg, &pos.off); err != nil ||
		magic1+" "+magic2 != spoolCursorMagic || pos.off < 0 {
		// A cursor we cannot read only costs re-sends from the oldest
		// segment, which JetStream de-duplicates.
		sp.log.Warn("nats spool: unreadable cursor, re-sending from the oldest segment", "dir", sp.dir)
		return spoolPos{}, nil
	}
	return pos, nil
}

// recover scans the segments, cuts torn tails, deletes fully acknowledged
// segments and positions the reader at the cursor.
func (sp *spool) recover() error {
	segs, err := sp.segments()
	if err != nil {
		return err
	}
	cur, err := sp.readCursor()
	if err != nil {
		return err
	}
	var kept []uint64
	for _, seg := range segs {
		if seg < cur.seg {
			if err := os.Remove(filepath.Join(sp.dir, spoolSegName(seg))); err != nil {
				return fmt.Errorf("remove acknowledged segment: %w", err)
			}
			continue
		}
		kept = append(kept, seg)
	}
	if len(kept) == 0 || kept[0] != cur.seg {
		// The cursor's segment is gone: start at the oldest one left.
		cur = spoolPos{}
		if len(kept) > 0 {
			cur.seg = kept[0]
		}
	}
	for i, seg := range kept {
		if i > 0 && seg != kept[i-1]+1 {
			sp.log.Warn("nats spool: gap in segment numbers", "dir", sp.dir, "after", kept[i-1], "next", seg)
		}
		size, recs, err := sp.scanSegment(seg)
		if err != nil {
			return err
		}
		if seg == cur.seg {
			if cur.off > size {
				cur.off = size
			}
			// Count only the records after the cursor.
			_, before, err := sp.scanPrefix(seg, cur.off)
			if err != nil {
				return err
			}
			recs -= before
			sp.bytes += size - cur.off
		} else {
			sp.bytes += size
		}
		sp.records += recs
	}
	next := uint64(1)
	if len(kept) > 0 {
		next = kept[len(kept)-1]
		sz, err := fileSize(filepath.Join(sp.dir, spoolSegName(next)))
		if err != nil {
			return err
		}
		if sz >= sp.segMax {
			next++
		}
	}
	if cur.seg == 0 {
		cur = spoolPos{seg: next}
	}
	sp.ack, sp.rpos = cur, cur
	return sp.openWriter(next)
}

func fileSize(path string) (int64, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return 0, fmt.Errorf("stat: %w", err)
	}
	return fi.Size(), nil
}

// scanSegment validates every frame of seg and truncates the file at the
// first bad one, returning the good size and record count.
func (sp *spool) scanSegment(seg uint64) (int64, int64, error) {
	path := filepath.Join(sp.dir, spoolSegName(seg))
	total, err := fileSize(path)
	if err != nil {
		return 0, 0, err
	}
	good, recs, err := sp.scanPrefix(seg, total)
	if err != nil {
		return 0, 0, err
	}
	if good < total {
		sp.log.Warn("nats spool: cutting torn or corrupt segment tail", "segment", path, "kept_bytes", good, "lost_bytes", total-good)
		if err := os.Truncate(path, good); err != nil {
			return 0, 0, fmt.Errorf("truncate torn segment: %w", err)
		}
	}
	return good, recs, nil
}

// scanPrefix walks the valid frames of seg that end at or before limit.
func (sp *spool) scanPrefix(seg uint64, limit int64) (int64, int64, error) {
	f, err := os.Open(filepath.Join(sp.dir, spoolSegName(seg)))
	if err != nil {
		return 0, 0, fmt.Errorf("open segment: %w", err)
	}
	defer f.Close()
	var off, recs int64
	var buf []byte
	for off < limit {
		var n int
		buf, n, err = readFrame(f, off, limit, buf)
		if err != nil {
			break
		}
		off += int64(n)
		recs++
	}
	return off, recs, nil
}

// readFrame reads and checks the frame at off, which must end by limit. It
// returns the payload (in buf's storage) and the frame size.
func readFrame(f *os.File, off, limit int64, buf []byte) ([]byte, int, error) {
	if limit-off < spoolFrameHeader {
		return buf, 0, errSpoolCorrupt
	}
	var hdr [spoolFrameHeader]byte
	if _, err := f.ReadAt(hdr[:], off); err != nil {
		return buf, 0, fmt.Errorf("read frame header: %w", err)
	}
	n := binary.LittleEndian.Uint32(hdr[0:4])
	sum := binary.LittleEndian.Uint32(hdr[4:8])
	if n > spoolMaxRecord || int64(n) > limit-off-spoolFrameHeader {
		return buf, 0, errSpoolCorrupt
	}
	if cap(buf) < int(n) {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if _, err := f.ReadAt(buf, off+spoolFrameHeader); err != nil {
		return buf, 0, fmt.Errorf("read frame: %w", err)
	}
	if crc32.Checksum(buf, crc32c) != sum {
		return buf, 0, errSpoolCorrupt
	}
	return buf, spoolFrameHeader + int(n), nil
}

func (sp *spool) openWriter(seg uint64) error {
	f, err := os.OpenFile(filepath.Join(sp.dir, spoolSegName(seg)), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("open segment for append: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("stat segment: %w", err)
	}
	sp.w = f
	sp.wpos = spoolPos{seg: seg, off: fi.Size()}
	return nil
}

// encode builds the frame for rec in sp.buf.
func (sp *spool) encode(rec spoolRec) ([]byte, error) {
	if len(rec.Kind) > spoolMaxKindLen || len(rec.Subject) > spoolMaxStringLen || len(rec.ID) > spoolMaxStringLen {
		return nil, fmt.Errorf("spool: record field too long (kind %d, subject %d, id %d bytes)", len(rec.Kind), len(rec.Subject), len(rec.ID))
	}
	plen := 1 + 1 + len(rec.Kind) + 2 + len(rec.Subject) + 2 + len(rec.ID) + len(rec.Data)
	if plen > spoolMaxRecord {
		return nil, fmt.Errorf("spool: record of %d bytes exceeds the %d byte limit", plen, spoolMaxRecord)
	}
	b := sp.buf[:0]
	b = binary.LittleEndian.AppendUint32(b, uint32(plen))
	b = binary.LittleEndian.AppendUint32(b, 0)
	b = append(b, spoolVersion, byte(len(rec.Kind)))
	b = append(b, rec.Kind...)
	b = binary.LittleEndian.AppendUint16(b, uint16(len(rec.Subject)))
	b = append(b, rec.Subject...)
	b = binary.LittleEndian.AppendUint16(b, uint16(len(rec.ID)))
	b = append(b, rec.ID...)
	b = append(b, rec.Data...)
	binary.LittleEndian.PutUint32(b[4:8], crc32.Checksum(b[spoolFrameHeader:], crc32c))
	sp.buf = b
	return b, nil
}

// decodeSpoolRec parses a frame payload; the result does not alias p.
func decodeSpoolRec(p []byte) (spoolRec, error) {
	var r spoolRec
	if len(p) < 2 || p[0] != spoolVersion {
		return r, errSpoolCorrupt
	}
	kl := int(p[1])
	p = p[2:]
	if len(p) < kl+2 {
		return r, errSpoolCorrupt
	}
	r.Kind = string(p[:kl])
	p = p[kl:]
	sl := int(binary.LittleEndian.Uint16(p))
	p = p[2:]
	if len(p) < sl+2 {
		return r, errSpoolCorrupt
	}
	r.Subject = string(p[:sl])
	p = p[sl:]
	il := int(binary.LittleEndian.Uint16(p))
	p = p[2:]
	if len(p) < il {
		return r, errSpoolCorrupt
	}
	r.ID = string(p[:il])
	r.Data = append([]byte(nil), p[il:]...)
	return r, nil
}

// Append adds rec at the end of the spool. It returns errSpoolFull, without
// writing, when the record would take the spool past its bound.
func (sp *spool) Append(rec spoolRec) error {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if sp.closed {
		return errSpoolClosed
	}
	frame, err := sp.encode(rec)
	if err != nil {
		return err
	}
	if sp.bytes+int64(len(frame)) > sp.max {
		return errSpoolFull
	}
	if sp.wpos.off > 0 && sp.wpos.off+int64(len(frame)) > sp.segMax {
		if err := sp.roll(); err != nil {
			return err
		}
	}
	n, err := sp.w.Write(frame)
	if err != nil {
		// A short write leaves a torn frame: cut it so later frames stay
		// readable.
		if n > 0 {
			if terr := sp.w.Truncate(sp.wpos.off); terr != nil {
				sp.log.Warn("nats spool: cannot cut a short write", "err", terr)
			}
		}
		return fmt.Errorf("spool: append: %w", err)
	}
	sp.wpos.off += int64(n)
	sp.bytes += int64(n)
	sp.records++
	sp.dirty = true
	return nil
}

// roll closes the write segment (fsynced) and starts the next one.
func (sp *spool) roll() error {
	if err := sp.w.Sync(); err != nil {
		return fmt.Errorf("spool: sync segment: %w", err)
	}
	if err := sp.w.Close(); err != nil {
		return fmt.Errorf("spool: close segment: %w", err)
	}
	return sp.openWriter(sp.wpos.seg + 1)
}

// ReadBatch returns up to n records (and about maxBytes of payload) after
// the read position and moves the position past them.
func (sp *spool) ReadBatch(n int, maxBytes int) ([]spoolRec, error) {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if sp.closed {
		return nil, errSpoolClosed
	}
	var out []spoolRec
	size := 0
	for len(out) < n && size < maxBytes {
		if sp.rpos == sp.wpos {
			break
		}
		limit := sp.wpos.off
		if sp.rpos.seg != sp.wpos.seg {
			sz, err := sp.readerSize()
			if errors.Is(err, os.ErrNotExist) {
				// A gap in the numbering (a segment removed by hand).
				sp.nextReadSegment()
				continue
			}
			if err != nil {
				return out, err
			}
			limit = sz
		}
		if sp.rpos.off >= limit {
			sp.nextReadSegment()
			continue
		}
		if err := sp.openReader(); err != nil {
			return out, err
		}
		var (
			p   []byte
			fn  int
			err error
		)
		p, fn, err = readFrame(sp.r, sp.rpos.off, limit, nil)
		var rec spoolRec
		if err == nil {
			rec, err = decodeSpoolRec(p)
		}
		if err != nil {
			// Frames were checked at open or written by this process, so
			// this is a disk fault: skip the segment rather than stall.
			sp.log.Warn("nats spool: unreadable frame, skipping rest of segment", "segment", sp.rpos.seg, "offset", sp.rpos.off, "err", err)
			sp.rbytes += limit - sp.rpos.off
			if sp.rpos.seg == sp.wpos.seg {
				sp.rpos.off = limit
				break
			}
			sp.nextReadSegment()
			continue
		}
		out = append(out, rec)
		size += len(rec.Data)
		sp.rpos.off += int64(fn)
		sp.rbytes += int64(fn)
		sp.rrecs++
	}
	return out, nil
}

func (sp *spool) readerSize() (int64, error) {
	if err := sp.openReader(); err != nil {
		return 0, err
	}
	fi, err := sp.r.Stat()
	if err != nil {
		return 0, fmt.Errorf("spool: stat segment: %w", err)
	}
	return fi.Size(), nil
}

func (sp *spool) openReader() error {
	if sp.r != nil && sp.rseg == sp.rpos.seg {
		return nil
	}
	if sp.r != nil {
		sp.r.Close()
		sp.r = nil
	}
	f, err := os.Open(filepath.Join(sp.dir, spoolSegName(sp.rpos.seg)))
	if err != nil {
		return fmt.Errorf("spool: open segment for read: %w", err)
	}
	sp.r, sp.rseg = f, sp.rpos.seg
	return nil
}

func (sp *spool) nextReadSegment() {
	sp.rpos = spoolPos{seg: sp.rpos.seg + 1}
}

// Commit marks everything read so far as acknowledged, persists the cursor
// and deletes segments that hold nothing unacknowledged.
func (sp *spool) Commit() error {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if sp.closed {
		return errSpoolClosed
	}
	old := sp.ack
	sp.ack = sp.rpos
	sp.bytes -= sp.rbytes
	sp.records -= sp.rrecs
	sp.rbytes, sp.rrecs = 0, 0
	if sp.ack == sp.wpos && sp.wpos.off > 0 {
		// Drained: start a fresh segment so the old one can go.
		if err := sp.roll(); err != nil {
			return err
		}
		sp.ack, sp.rpos = sp.wpos, sp.wpos
	}
	if err := sp.writeCursor(); err != nil {
		return err
	}
	for seg := old.seg; seg < sp.ack.seg; seg++ {
		if sp.r != nil && sp.rseg == seg {
			sp.r.Close()
			sp.r = nil
		}
		err := os.Remove(filepath.Join(sp.dir, spoolSegName(seg)))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("spool: remove acknowledged segment: %w", err)
		}
	}
	return nil
}

func (sp *spool) writeCursor() error {
	tmp := filepath.Join(sp.dir, spoolCursorFile+".tmp")
	line := fmt.Sprintf("%s %d %d\n", spoolCursorMagic, sp.ack.seg, sp.ack.off)
	if err := os.WriteFile(tmp, []byte(line), 0o600); err != nil {
		return fmt.Errorf("spool: write cursor: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(sp.dir, spoolCursorFile)); err != nil {
		return fmt.Errorf("spool: write cursor: %w", err)
	}
	return nil
}

// Rewind moves the read position back to the last commit, so records
// whose acknowledgement failed are read again.
func (sp *spool) Rewind() {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	sp.rpos = sp.ack
	sp.rbytes, sp.rrecs = 0, 0
}

// Len returns the unacknowledged records and bytes.
func (sp *spool) Len() (records, bytes int64) {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	return sp.records, sp.bytes
}

// Sync fsyncs the write segment if it changed since the last Sync.
func (sp *spool) Sync() error {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if sp.closed || !sp.dirty {
		return nil
	}
	if err := sp.w.Sync(); err != nil {
		return fmt.Errorf("spool: sync: %w", err)
	}
	sp.dirty = false
	return nil
}

// Close syncs and closes the files and releases the directory lock.
func (sp *spool) Close() error {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if sp.closed {
		return nil
	}
	sp.closed = true
	var errs []error
	if err := sp.w.Sync(); err != nil {
		errs = append(errs, fmt.Errorf("spool: sync: %w", err))
	}
	if err := sp.w.Close(); err != nil {
		errs = append(errs, fmt.Errorf("spool: close: %w", err))
	}
	if sp.r != nil {
		sp.r.Close()
	}
	if err := sp.writeCursor(); err != nil {
		errs = append(errs, err)
	}
	if sp.wpos.off == 0 && sp.records == 0 {
		// Leave no empty segment behind.
		os.Remove(filepath.Join(sp.dir, spoolSegName(sp.wpos.seg)))
	}
	if err := sp.lock.Close(); err != nil {
		errs = append(errs, fmt.Errorf("spool: release lock: %w", err))
	}
	return errors.Join(errs...)
}
