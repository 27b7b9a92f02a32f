package redistest

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Kill sends SIGKILL to the server, as a crash would, and waits for it to
// exit: it is Stop, named for what a fault test means by it. Restart brings
// the server back.
func (s *Server) Kill() {
	s.Stop()
}

// Restart starts the server again on the same port with the same
// configuration and directory (so an AOF or dump file written before is
// loaded), after it was stopped or killed, and waits until it answers PING.
func (s *Server) Restart() error {
	select {
	case <-s.done:
	default:
		return fmt.Errorf("restart redis-server on %s: it is still running (Kill it first)", s.Addr)
	}
	confs, err := filepath.Glob(filepath.Join(s.Dir, "redis-*.conf"))
	if err != nil || len(confs) != 1 {
		return fmt.Errorf("restart redis-server on %s: want one redis-*.conf in %s, found %v", s.Addr, s.Dir, confs)
	}
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return err
	}
	var lastErr error
	// the port was just released; the kernel may take a moment to let it go
	for attempt := 0; attempt < 50; attempt++ {
		cmd := exec.Command(bin, confs[0])
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("restart redis-server: %w", err)
		}
		s.cmd, s.done = cmd, make(chan struct{})
		done := s.done
		go func() { _ = cmd.Wait(); close(done) }()
		lastErr = s.waitReady(30 * time.Second)
		if lastErr == nil {
			return nil
		}
		if !strings.Contains(lastErr.Error(), "exited at start") {
			return lastErr
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("restart redis-server on %s: %w", s.Addr, lastErr)
}

// Pause stops the server process (SIGSTOP): connections stay open but
// nothing answers, as with a hung server or a network partition. Resume ends
// it.
func (s *Server) Pause() error {
	return s.cmd.Process.Signal(syscall.SIGSTOP)
}

// Resume continues a paused server (SIGCONT).
func (s *Server) Resume() error {
	return s.cmd.Process.Signal(syscall.SIGCONT)
}

// Running reports whether the server process is still alive.
func (s *Server) Running() bool {
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}
