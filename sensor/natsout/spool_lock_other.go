//go:build !unix

package natsout

import (
	"fmt"
	"os"
)

// spoolLock on systems without flock only opens the lock file: running two
// sensors on one spool directory there is the operator's mistake to avoid.
func spoolLock(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock file: %w", err)
	}
	return f, nil
}
