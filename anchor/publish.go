package anchor

import (
	"errors"
	"fmt"
	"log/slog"
	"log/syslog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
)

// Publisher signs anchors and publishes them: always as a log line (logs
// shipped off the host keep them), and appended to File when set (put it
// on storage the store's host cannot rewrite: another volume, a mount of
// a WORM bucket).
type Publisher struct {
	Log    *slog.Logger
	Key    Signer
	File   string
	Syslog *syslog.Writer // nil for none (DialSyslog)
}

// Publish signs a and publishes it with the log message msg.
func (p *Publisher) Publish(msg string, a Anchor) error {
	tok := Sign(a, p.Key)
	p.Log.Info(msg, "events", a.Events, "head_event", a.HeadID, "head_hash", a.HeadHash,
		"checkpoint", a.Checkpoint, "anchor", tok)
	var errs []error
	if p.Syslog != nil {
		// The writer redials a lost connection by itself.
		if err := p.Syslog.Info("chain anchor " + tok); err != nil {
			errs = append(errs, fmt.Errorf("anchor syslog: %w", err))
		}
	}
	if p.File != "" {
		errs = append(errs, appendLine(p.File, tok))
	}
	return errors.Join(errs...)
}

func appendLine(path, tok string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("anchor file: %w", err)
	}
	_, err = f.WriteString(tok + "\n")
	if serr := f.Sync(); err == nil {
		err = serr
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("anchor file %s: %w", path, err)
	}
	return nil
}

// ValidateFile refuses an anchor file inside the store's directory: anchors
// next to the store protect nothing, whoever can rewrite the store can
// rewrite them.
func ValidateFile(file, dataDir string) error {
	if file == "" || dataDir == "" {
		return nil
	}
	if rel, err := filepath.Rel(filepath.Clean(dataDir), filepath.Clean(file)); err == nil && rel != ".." && !strings.HasPrefix(rel, "../") {
		return fmt.Errorf("%s is inside data_dir %s: put the anchors where whoever holds the store cannot rewrite them", file, dataDir)
	}
	return nil
}

// ValidateSyslogAddr accepts SyslogAddr's forms.
func ValidateSyslogAddr(s string) error {
	_, _, err := SyslogAddr(s)
	return err
}

// SyslogAddr splits a syslog address (udp://host:port, tcp://host:port,
// unix:///path) into log/syslog's network and address.
func SyslogAddr(s string) (network, addr string, err error) {
	u, perr := url.Parse(s)
	switch {
	case perr != nil:
	case (u.Scheme == "udp" || u.Scheme == "tcp") && u.Host != "" && u.Port() != "":
		return u.Scheme, u.Host, nil
	case u.Scheme == "unix" && u.Path != "":
		return "unixgram", u.Path, nil
	}
	return "", "", fmt.Errorf("%q is not a syslog address (want udp://host:514, tcp://host:601 or unix:///dev/log)", s)
}

// DialSyslog connects to the syslog server at addr (SyslogAddr's forms).
func DialSyslog(addr string) (*syslog.Writer, error) {
	network, raddr, err := SyslogAddr(addr)
	if err != nil {
		return nil, err
	}
	w, err := syslog.Dial(network, raddr, syslog.LOG_INFO|syslog.LOG_DAEMON, "cdcaudit")
	if err != nil {
		return nil, fmt.Errorf("anchor syslog %s: %w", addr, err)
	}
	return w, nil
}
