// Package fetch is the hardened HTTP client of every outbound call the
// gateway makes to a server named in its configuration or in a document it
// read: another authorization server's metadata, keys and introspection
// endpoint, and later a client's jwks_uri or metadata document.
//
// Every call has a deadline and a bounded answer; redirects are followed
// only when the caller allows them, at most a few, within the origin of the
// first request (so never from https to http); and, when asked, addresses
// that are loopback, private or link-local are refused at dial time, after
// name resolution, so a name that resolves to one cannot slip past (SSRF).
package fetch

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
	"time"
)

// Options configure a Client.
type Options struct {
	// Timeout bounds each call, from dialling to the last byte of the
	// answer. Default: 5s.
	Timeout time.Duration
	// MaxBody bounds the answer's body; a longer one is an error, not a
	// truncated read. Default: 1 MiB.
	MaxBody int64
	// MaxRedirects is how many redirects a GET follows, all within the
	// origin of the first request. Default: 0, none; a POST never follows
	// one (its body may carry a credential).
	MaxRedirects int
	// RefusePrivate refuses to connect to loopback, private (RFC 1918,
	// RFC 4193), link-local, shared (RFC 6598), unspecified and multicast
	// addresses. Default: false. Set it where the URL comes from someone
	// other than the operator (a client's jwks_uri).
	RefusePrivate bool
	// TLS is the TLS configuration. Default: the system's roots, TLS 1.2
	// at least.
	TLS *tls.Config
}

// Client makes outbound calls as Options say. It is safe for concurrent use.
type Client struct {
	opts      Options
	transport *http.Transport
	get, post *http.Client
}

// Errors of a call the client refused to make or finish.
var (
	ErrRedirect = errors.New("redirect not followed")
	ErrTooLarge = errors.New("answer too large")
	ErrAddress  = errors.New("address refused")
)

// New returns a Client for o.
func New(o Options) *Client {
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Second
	}
	if o.MaxBody <= 0 {
		o.MaxBody = 1 << 20
	}
	if o.TLS == nil {
		o.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	dialer := &net.Dialer{Timeout: o.Timeout, KeepAlive: 30 * time.Second}
	if o.RefusePrivate {
		dialer.Control = refusePrivate
	}
	t := &http.Transport{
		// No proxy from the environment: it would see every token asked
		// about, and the SSRF rules would judge the proxy, not the target.
		DialContext:           dialer.DialContext,
		TLSClientConfig:       o.TLS,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          100,
		MaxIdleConnsPerHost:   32,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   o.Timeout,
		ResponseHeaderTimeout: o.Timeout,
	}
	c := &Client{opts: o, transport: t}
	c.post = &http.Client{Transport: t, CheckRedirect: func(*http.Request, []*http.Request) error { return ErrRedirect }}
	c.get = &http.Client{Transport: t, CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if len(via) > o.MaxRedirects {
			return fmt.Errorf("%w: more than %d", ErrRedirect, o.MaxRedirects)
		}
		if origin(req.URL) != origin(via[0].URL) {
			return fmt.Errorf("%w: %s leaves the origin %s", ErrRedirect, origin(req.URL), origin(via[0].URL))
		}
		return nil
	}}
	return c
}

// Timeout is the deadline of each call.
func (c *Client) Timeout() time.Duration { return c.opts.Timeout }

// origin is a URL's scheme and host (with port), lowercase (RFC 6454 §4).
func origin(u *url.URL) string {
	return strings.ToLower(u.Scheme) + "://" + strings.ToLower(u.Host)
}

// Get GETs rawURL (following redirects as Options say) and returns the
// status and body of the answer.
func (c *Client) Get(ctx context.Context, rawURL string, accept string) (int, []byte, error) {
	req, err := http.NewRequest(http.MethodGet, rawURL, nil)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Accept", accept)
	return c.do(ctx, c.get, req)
}

// GetWithHeader is Get that also returns the answer's header, for a
// caller that honours its caching headers.
func (c *Client) GetWithHeader(ctx context.Context, rawURL string, accept string) (int, http.Header, []byte, error) {
	req, err := http.NewRequest(http.MethodGet, rawURL, nil)
	if err != nil {
		return 0, nil, nil, err
	}
	req.Header.Set("Accept", accept)
	var h http.Header
	status, body, err := c.doHeader(ctx, c.get, req, &h)
	return status, h, body, err
}

// PostForm POSTs form to rawURL, with HTTP Basic credentials when user is
// not empty, and never follows a redirect: the form and the credentials go
// to rawURL or nowhere.
func (c *Client) PostForm(ctx context.Context, rawURL string, form url.Values, user, password, accept string) (int, []byte, error) {
	req, err := http.NewRequest(http.MethodPost, rawURL, strings.NewReader(form.Encode()))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", accept)
	if user != "" {
		req.SetBasicAuth(user, password)
	}
	return c.do(ctx, c.post, req)
}

func (c *Client) do(ctx context.Context, hc *http.Client, req *http.Request) (int, []byte, error) {
	return c.doHeader(ctx, hc, req, nil)
}

func (c *Client) doHeader(ctx context.Context, hc *http.Client, req *http.Request, header *http.Header) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()
	resp, err := hc.Do(req.WithContext(ctx))
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	if header != nil {
		*header = resp.Header
	}
	if resp.ContentLength > c.opts.MaxBody {
		return resp.StatusCode, nil, fmt.Errorf("%s %s: %w (%d bytes)", req.Method, req.URL.Redacted(), ErrTooLarge, resp.ContentLength)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, c.opts.MaxBody+1))
	if err != nil {
		return resp.StatusCode, nil, fmt.Errorf("%s %s: %w", req.Method, req.URL.Redacted(), err)
	}
	if int64(len(b)) > c.opts.MaxBody {
		return resp.StatusCode, nil, fmt.Errorf("%s %s: %w (over %d bytes)", req.Method, req.URL.Redacted(), ErrTooLarge, c.opts.MaxBody)
	}
	return resp.StatusCode, b, nil
}

// CloseIdleConnections closes the connections kept for reuse.
func (c *Client) CloseIdleConnections() { c.transport.CloseIdleConnections() }

// refusePrivate is the dialer's check of the address it is about to
// connect to, after name resolution.
func refusePrivate(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: %s", ErrAddress, address)
	}
	if !Public(ap.Addr()) {
		return fmt.Errorf("%w: %s is not a public address", ErrAddress, ap.Addr())
	}
	return nil
}

// shared is RFC 6598's carrier-grade NAT space, which IsPrivate omits.
var shared = netip.MustParsePrefix("100.64.0.0/10")

// Public reports whether a is a global unicast address outside the
// private, shared and loopback ranges.
func Public(a netip.Addr) bool {
	a = a.Unmap()
	return a.IsGlobalUnicast() && !a.IsPrivate() && !shared.Contains(a)
}

// Loopback reports whether the URL's host is loopback: localhost, or a
// loopback IP address.
func Loopback(u *url.URL) bool {
	h := u.Hostname()
	if strings.EqualFold(h, "localhost") || strings.HasSuffix(strings.ToLower(h), ".localhost") {
		return true
	}
	a, err := netip.ParseAddr(h)
	return err == nil && a.IsLoopback()
}
