package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

const healthAbout = `Ask a running daemon's /healthz whether it is healthy: exit 0 when it
answers 200, 1 otherwise (503 with its reason, or no answer within
--timeout). For a container's healthcheck where the image has no shell, curl
or wget (the distroless image):

  healthcheck:
    test: ["CMD", "/usr/local/bin/cdcaudit", "health"]

Without --url it asks http://<CDCAUDIT_HTTP_ADDR>/healthz, an unspecified
host (0.0.0.0, ::, none) read as 127.0.0.1, and http://127.0.0.1:9187/healthz
when the variable is not set. With TLS on, give --url https://NAME:PORT/healthz
(the certificate is verified).`

// health asks /healthz of a running daemon.
func (c *cli) health(args []string) int {
	fs := c.flagSet("health", "[--url URL]", healthAbout, "")
	url := fs.String("url", "", "the daemon's /healthz `URL` (default: from CDCAUDIT_HTTP_ADDR, else http://127.0.0.1:9187/healthz)")
	timeout := fs.Duration("timeout", 5*time.Second, "how long to wait for the answer")
	if code, done := c.parse(fs, args); done {
		return code
	}
	u := *url
	if u == "" {
		addr, _ := c.getenv("CDCAUDIT_HTTP_ADDR")
		u = "http://" + loopbackAddr(addr) + "/healthz"
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return c.usageErr("health", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Fprintf(c.stderr, "cdcaudit health: %v\n", err)
		return exitFail
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	msg := strings.TrimSpace(string(body))
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(c.stderr, "cdcaudit health: %s: %s\n", resp.Status, msg)
		return exitFail
	}
	fmt.Fprintln(c.stdout, msg)
	return exitOK
}

// loopbackAddr is where a process on the same host reaches a server
// listening on addr: an unspecified host becomes 127.0.0.1.
func loopbackAddr(addr string) string {
	if addr == "" {
		return "127.0.0.1:9187"
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}
