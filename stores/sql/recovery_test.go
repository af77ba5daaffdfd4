package sql

import (
	"context"
	"errors"
	"io"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/tokengate/caddy-oauth2/stores"
	"github.com/tokengate/caddy-oauth2/stores/storetest"
)

// proxy forwards a local port to a database server and can cut every
// connection, as a network failure or a database restart would.
type proxy struct {
	target string
	addr   string
	mu     sync.Mutex
	l      net.Listener
	conns  []net.Conn
}

func newProxy(t *testing.T, target string) *proxy {
	t.Helper()
	p := &proxy{target: target}
	p.listen(t, "127.0.0.1:0")
	t.Cleanup(p.down)
	return p
}

func (p *proxy) listen(t *testing.T, addr string) {
	t.Helper()
	var l net.Listener
	var err error
	for i := 0; i < 50; i++ { // the port may linger briefly after down
		if l, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	p.mu.Lock()
	p.l, p.addr = l, l.Addr().String()
	p.mu.Unlock()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", p.target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, s)
			p.mu.Unlock()
			go func() { _, _ = io.Copy(s, c); s.Close() }()
			go func() { _, _ = io.Copy(c, s); c.Close() }()
		}
	}()
}

// down closes the listener and every connection through it.
func (p *proxy) down() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.l != nil {
		p.l.Close()
		p.l = nil
	}
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// TestRecovery cuts the connection to a real server: calls fail with
// ErrUnavailable within their deadline, and succeed again, on the same
// store, once the server is back.
func TestRecovery(t *testing.T) {
	for _, sd := range serverDialects[:2] {
		t.Run(sd.dialect, func(t *testing.T) {
			dsn := serverDSN(t, sd.dialect, sd.env)
			var target string
			var via func(addr string) string
			switch sd.dialect {
			case "mysql":
				cfg, err := mysql.ParseDSN(dsn)
				if err != nil {
					t.Fatal(err)
				}
				target = cfg.Addr
				via = func(addr string) string { c := cfg.Clone(); c.Addr = addr; return c.FormatDSN() }
			case "postgres":
				u, err := url.Parse(dsn)
				if err != nil || u.Host == "" {
					t.Skipf("%s is not a postgres:// URL", sd.env)
				}
				target = u.Host
				via = func(addr string) string { v := *u; v.Host = addr; return v.String() }
			}
			p := newProxy(t, target)
			e := newEngine(t, sd.dialect, via(p.addr), Options{})
			tok := &stores.Token{Key: storetest.Key(), Kind: stores.AccessToken, ClientID: "c", Family: "f",
				IssuedAt: time.Now(), ExpiresAt: time.Now().Add(time.Hour)}
			if err := e.InsertTokens(testCtx(t, 10*time.Second), tok); err != nil {
				t.Fatal(err)
			}

			addr := p.addr
			p.down()
			for i := 0; i < 3; i++ {
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				began := time.Now()
				_, err := e.LookupToken(ctx, stores.AccessToken, tok.Key)
				cancel()
				if !errors.Is(err, stores.ErrUnavailable) {
					t.Fatalf("lookup %d while down: %v, want ErrUnavailable", i, err)
				}
				if took := time.Since(began); took > 2*time.Second {
					t.Fatalf("lookup while down took %v", took)
				}
				if strings.Contains(err.Error(), tok.Key) {
					t.Fatal("error message contains the token key")
				}
			}

			p.listen(t, addr)
			deadline := time.Now().Add(10 * time.Second)
			for {
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				_, err := e.LookupToken(ctx, stores.AccessToken, tok.Key)
				cancel()
				if err == nil {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("store did not recover: %v", err)
				}
				time.Sleep(100 * time.Millisecond)
			}
		})
	}
}
