package syncbuf

import (
	"strings"
	"sync"
	"testing"
)

// TestBufferConcurrent: writes from several goroutines while another reads
// all arrive whole (run with -race to check the locking).
func TestBufferConcurrent(t *testing.T) {
	var b Buffer
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				if _, err := b.Write([]byte("line\n")); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	for range 10 {
		_ = b.String()
	}
	wg.Wait()
	if n := strings.Count(b.String(), "line\n"); n != 400 {
		t.Fatalf("%d lines, want 400", n)
	}
}
