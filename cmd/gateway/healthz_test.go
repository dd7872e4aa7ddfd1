package main

import (
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
)

// tcpProxy forwards connections to target until cut, which closes the
// listener and every forwarded connection: the dependency becomes
// unreachable for the process under test, without stopping the shared one.
type tcpProxy struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
	cut   bool
}

func newTCPProxy(t *testing.T, target string) *tcpProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{ln: ln}
	t.Cleanup(p.Cut)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			if !p.track(c, u) {
				return
			}
			go func() { _, _ = io.Copy(u, c); u.Close() }()
			go func() { _, _ = io.Copy(c, u); c.Close() }()
		}
	}()
	return p
}

func (p *tcpProxy) track(cs ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cut {
		for _, c := range cs {
			c.Close()
		}
		return false
	}
	p.conns = append(p.conns, cs...)
	return true
}

func (p *tcpProxy) Addr() string { return p.ln.Addr().String() }

// Cut makes the target unreachable through the proxy.
func (p *tcpProxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
	p.ln.Close()
	for _, c := range p.conns {
		c.Close()
	}
}

func getBody(t *testing.T, u string) (int, http.Header, string) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

// The public /healthz says only "ok" or "unavailable"; which dependency
// failed and why (database user, internal addresses) goes to the log and
// to the metrics listener's /healthz.
func TestHealthzPublicSaysOnlyUnavailable(t *testing.T) {
	env := baseEnv(t)
	migrate(t, env)
	du, err := url.Parse(env["DATABASE_URL"])
	if err != nil {
		t.Fatal(err)
	}
	pg := newTCPProxy(t, du.Host)
	du.Host = pg.Addr()
	env["DATABASE_URL"] = du.String()
	rd := newTCPProxy(t, strings.TrimSuffix(strings.TrimPrefix(env["REDIS_URL"], "redis://"), "/0"))
	env["REDIS_URL"] = "redis://" + rd.Addr() + "/0"
	logs := start(t, env, http.DefaultClient, "http")
	public, metrics := "http://"+env["GATEWAY_ADDR"]+"/healthz", "http://"+env["GATEWAY_METRICS_ADDR"]+"/healthz"
	for _, u := range []string{public, metrics} {
		if code, _, body := getBody(t, u); code != 200 || body != "ok\n" {
			t.Fatalf("%s healthy: %d %q", u, code, body)
		}
	}

	pg.Cut()
	code, hdr, body := getBody(t, public)
	if code != 503 || body != "unavailable\n" || hdr.Get("Cache-Control") != "no-store" {
		t.Errorf("public /healthz without PostgreSQL: %d %q, want 503 exactly \"unavailable\\n\"", code, body)
	}
	code, _, body = getBody(t, metrics)
	if code != 503 || !strings.Contains(body, "postgres: ") || strings.Contains(body, "redis") {
		t.Errorf("metrics /healthz without PostgreSQL: %d %q, want the postgres error only", code, body)
	}
	if !strings.Contains(logs.String(), `"msg":"health check failed","listener":"public","problems":["postgres: `) {
		t.Errorf("public health failure not logged with its detail:\n%s", logs)
	}

	rd.Cut()
	if code, _, body := getBody(t, public); code != 503 || body != "unavailable\n" {
		t.Errorf("public /healthz without PostgreSQL and Redis: %d %q", code, body)
	}
	code, _, body = getBody(t, metrics)
	if code != 503 || !strings.Contains(body, "postgres: ") || !strings.Contains(body, "\nredis: ") {
		t.Errorf("metrics /healthz without PostgreSQL and Redis: %d %q, want both named", code, body)
	}
}

// In production every response of the public listener carries HSTS; in
// development none does.
func TestHSTSInProduction(t *testing.T) {
	routes := []string{"/healthz", "/v1/keys/k_0123456789abcdef0123456789abcdef", "/no/such/route", "/v1/videos/v/master.m3u8?token=garbage"}
	for _, production := range []bool{true, false} {
		env := baseEnv(t)
		migrate(t, env)
		if production {
			// TLS terminated in front of the gateway.
			env["GATEWAY_PRODUCTION"] = "true"
			env["GATEWAY_PUBLIC_URL"] = "https://video.example.com"
		}
		start(t, env, http.DefaultClient, "http")
		for _, p := range routes {
			code, hdr, _ := getBody(t, "http://"+env["GATEWAY_ADDR"]+p)
			got := hdr.Get("Strict-Transport-Security")
			if production && got != "max-age=31536000; includeSubDomains" {
				t.Errorf("production %s (%d): Strict-Transport-Security %q", p, code, got)
			}
			if !production && got != "" {
				t.Errorf("development %s (%d): Strict-Transport-Security %q", p, code, got)
			}
		}
	}
}
