package wait

import (
	"bytes"
	"strings"
	"sync"
)

// Buffer collects output (a logger's, a process's) that a test reads while
// it is still being written; safe for concurrent use.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// String returns what was written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// Count returns how many times s was written so far.
func (b *Buffer) Count(s string) int { return strings.Count(b.String(), s) }
