//go:build unix

package natsout

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// spoolLock takes an exclusive advisory lock on path so that two sensors
// never interleave records in one spool. The kernel drops the lock when the
// process dies, so a crash leaves no stale lock behind.
func spoolLock(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock file: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("spool is in use by another process (give each sensor its own --spool-dir): %w", err)
		}
		return nil, fmt.Errorf("lock: %w", err)
	}
	return f, nil
}
