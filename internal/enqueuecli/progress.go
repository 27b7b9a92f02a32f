package enqueuecli

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// progressBar draws "[=====>    ]  45000/100000  45%  31250/s" on one
// terminal line, redrawn every progressTick, and erases it when stopped.
type progressBar struct {
	w     io.Writer
	total int
	done  atomic.Int64
	start time.Time
	quit  chan struct{}
	wg    sync.WaitGroup
}

const (
	progressTick  = 100 * time.Millisecond
	progressWidth = 30
)

func startProgress(w io.Writer, total int) *progressBar {
	p := &progressBar{w: w, total: total, start: time.Now(), quit: make(chan struct{})}
	p.render()
	p.wg.Go(func() {
		t := time.NewTicker(progressTick)
		defer t.Stop()
		for {
			select {
			case <-p.quit:
				return
			case <-t.C:
				p.render()
			}
		}
	})
	return p
}

func (p *progressBar) render() {
	n := int(p.done.Load())
	frac := 0.0
	if p.total > 0 {
		frac = float64(n) / float64(p.total)
	}
	filled := int(frac * progressWidth)
	bar := strings.Repeat("=", filled)
	if filled < progressWidth {
		bar += ">" + strings.Repeat(" ", progressWidth-filled-1)
	}
	rate := 0.0
	if s := time.Since(p.start).Seconds(); s > 0 {
		rate = float64(n) / s
	}
	fmt.Fprintf(p.w, "\r[%s] %*d/%d %3.0f%% %7.0f/s", bar, len(fmt.Sprint(p.total)), n, p.total, frac*100, rate)
}

// stop stops redrawing and erases the line, so the summary that follows
// starts on a clean line.
func (p *progressBar) stop() {
	close(p.quit)
	p.wg.Wait()
	fmt.Fprint(p.w, "\r\x1b[K")
}

// isTerminal reports whether w is a terminal (a character device).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
