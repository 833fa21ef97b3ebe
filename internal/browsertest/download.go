package browsertest

import (
	"context"
	"os"
	"path/filepath"

	cdpbrowser "github.com/chromedp/cdproto/browser"
)

// Downloads is the directory the browser saves downloads into.
func (b *Browser) Downloads() string { return b.downloads }

// onBrowserEvent runs in the browser's message loop: quick, no commands.
func (b *Browser) onBrowserEvent(ev any) {
	switch ev := ev.(type) {
	case *cdpbrowser.EventDownloadWillBegin:
		b.mu.Lock()
		b.suggested[ev.GUID] = ev.SuggestedFilename
		b.mu.Unlock()
	case *cdpbrowser.EventDownloadProgress:
		if ev.State != cdpbrowser.DownloadProgressStateCompleted {
			return
		}
		b.mu.Lock()
		b.finished = append(b.finished, ev.GUID)
		close(b.changed)
		b.changed = make(chan struct{})
		b.mu.Unlock()
	}
}

// WaitDownload waits (up to ActionTimeout) for the next download to
// complete, one per call in the order they complete, and returns its path in
// Downloads under the name the server suggested (Content-Disposition). A
// second file with the same suggested name keeps its download id as name.
func (b *Browser) WaitDownload() string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, ActionTimeout)
	defer cancel()
	for {
		b.mu.Lock()
		if b.taken < len(b.finished) {
			guid := b.finished[b.taken]
			name := b.suggested[guid]
			b.taken++
			b.mu.Unlock()
			return b.rename(guid, name)
		}
		changed := b.changed
		b.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			b.fail(context.Cause(ctx))
			return ""
		}
	}
}

func (b *Browser) rename(guid, name string) string {
	b.t.Helper()
	from := filepath.Join(b.downloads, guid)
	name = filepath.Base(name)
	if name == "." || name == "/" || name == "" {
		return from
	}
	to := filepath.Join(b.downloads, name)
	if _, err := os.Stat(to); err == nil {
		return from
	}
	if err := os.Rename(from, to); err != nil {
		b.t.Fatalf("browsertest: download %s: %v", name, err)
	}
	return to
}
