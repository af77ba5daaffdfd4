package issuer

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/tokengate/caddy-oauth2/fetch"
)

// Client ID metadata documents (draft-ietf-oauth-client-id-metadata-document,
// which the MCP authorization spec adopts): a client_id that is an https
// URL names a JSON document of client metadata (RFC 7591 §2) at that URL.
// The server fetches it when the client first appears, through the hardened
// fetcher (https only, no redirects, no private, loopback or link-local
// address, 5 s, 64 KiB), and keeps it for as long as its caching headers
// say, within [MinDocumentCache, MaxDocumentCache]. Such a client is always
// public (PKCE mandatory), its redirect URIs obey the rules of configured
// ones, and it never skips consent.

// Bounds of a document's stay in the cache, whatever its headers say.
const (
	MinDocumentCache = 5 * time.Minute
	MaxDocumentCache = 24 * time.Hour
	// DocumentMaxBytes and DocumentTimeout bound each fetch.
	DocumentMaxBytes = 64 << 10
	DocumentTimeout  = 5 * time.Second
	// defaultDocumentEntries bounds the cache.
	defaultDocumentEntries = 10_000
	// failedDocumentCache is how long a document that could not be used is
	// not fetched again, so a client retrying (or someone naming the URL
	// over and over) does not make the server fetch it each time.
	failedDocumentCache = time.Minute
	// maxDocumentFetches bounds the fetches under way at once.
	maxDocumentFetches = 32
)

// MetadataDocuments configures client ID metadata documents.
type MetadataDocuments struct {
	// Scopes are the most such a client may be granted: the document's
	// scope is cut to them, and a document naming none gets all of them.
	// Default: none.
	Scopes []string
	// AllowHosts, when set, are the hosts whose documents are accepted:
	// exact names, or "*.example.com" for any name below example.com.
	// Default: any host with a public address.
	AllowHosts []string
	// AllowPrivateAddresses lets documents come from loopback, private and
	// link-local addresses. For tests only. Default: false.
	AllowPrivateAddresses bool
	// TLS is the TLS configuration of the fetches (tests trust a loopback
	// server's certificate with it). Default: the system's roots.
	TLS *tls.Config
	// MaxEntries bounds the documents kept. Default: 10,000.
	MaxEntries int
	// Failed is told of every document that could not be used, by reason
	// (fetch, status, too_large, redirect, address, invalid, mismatch,
	// host, busy), for metrics. Default: nothing.
	Failed func(reason string)

	log    *zap.Logger
	client *fetch.Client
	now    func() time.Time
	mu     sync.Mutex
	cache  map[string]documentEntry
	slots  chan struct{}
}

// documentEntry is a fetched document's client, or why it could not be
// used, and until when that stands.
type documentEntry struct {
	c     *client
	err   *documentError
	until time.Time
}

// documentError is why a document could not be used: reason labels it in
// metrics, the message is shown to the resource owner.
type documentError struct {
	reason string
	msg    string
}

func (e *documentError) Error() string { return e.msg }

// init checks the configuration and builds the fetcher.
func (d *MetadataDocuments) init(s *Server) error {
	for _, sc := range d.Scopes {
		if !validScopeToken(sc) {
			return fmt.Errorf("issuer: client_id_metadata_documents: invalid scope %q", sc)
		}
	}
	for _, h := range d.AllowHosts {
		if h == "" || strings.ContainsAny(h, "/:@ ") || strings.Contains(strings.TrimPrefix(h, "*."), "*") {
			return fmt.Errorf("issuer: client_id_metadata_documents: allow_hosts: %q is neither a host name nor *.<domain>", h)
		}
	}
	if d.cache != nil {
		return nil // shared by the app's servers: set up by the first
	}
	if d.MaxEntries <= 0 {
		d.MaxEntries = defaultDocumentEntries
	}
	d.log, d.now = s.log, s.now
	d.client = fetch.New(fetch.Options{
		Timeout:       DocumentTimeout,
		MaxBody:       DocumentMaxBytes,
		MaxRedirects:  0, // draft §4: a document is where its client_id says
		RefusePrivate: !d.AllowPrivateAddresses,
		TLS:           d.TLS,
	})
	d.cache = map[string]documentEntry{}
	d.slots = make(chan struct{}, maxDocumentFetches)
	return nil
}

// IsDocumentID reports whether a client_id has the shape of a client ID
// metadata document URL: https, cheaply, before any other check.
func IsDocumentID(id string) bool { return strings.HasPrefix(id, "https://") }

// clientOrDocument returns the client with the ID: configured, registered at
// runtime or, with metadata documents on, described by the document the ID
// names. It returns nil and no error for an unknown client, and an error
// when a document could not be used.
func (s *Server) clientOrDocument(ctx context.Context, id string) (*client, error) {
	if c := s.client(id); c != nil || s.cimd == nil || !IsDocumentID(id) {
		return c, nil
	}
	c, err := s.cimd.get(ctx, id)
	if err != nil {
		var de *documentError
		if !errors.As(err, &de) {
			de = &documentError{"fetch", "it could not be fetched"}
		}
		s.log.Info("client ID metadata document refused", zap.String("client_id", id), zap.String("reason", de.reason), zap.Error(err))
		if s.cimd.Failed != nil {
			s.cimd.Failed(de.reason)
		}
		return nil, de
	}
	return c, nil
}

// documentStandIn is the client of a document's tokens where no fetch may
// happen (introspection, the guard): a public client with the scopes such
// clients may have, nil when id names no document.
func (s *Server) documentStandIn(id string) *client {
	if s.cimd == nil || !IsDocumentID(id) {
		return nil
	}
	if c := s.cimd.cached(id); c != nil {
		return c
	}
	scopes := make(map[string]bool, len(s.cimd.Scopes))
	for _, sc := range s.cimd.Scopes {
		scopes[sc] = true
	}
	return &client{Client: Client{ID: id, Scopes: s.cimd.Scopes}, scopes: scopes, document: true}
}

// cached returns the live cached client of a document, nil for none.
func (d *MetadataDocuments) cached(id string) *client {
	c, _ := d.lookup(id)
	return c
}

// lookup returns the live cache entry of a document: its client, or why
// it could not be used; both nil when there is none.
func (d *MetadataDocuments) lookup(id string) (*client, *documentError) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if e, ok := d.cache[id]; ok && d.now().Before(e.until) {
		return e.c, e.err
	}
	return nil, nil
}

// get returns the client of the document at id, from the cache or fetched.
func (d *MetadataDocuments) get(ctx context.Context, id string) (*client, error) {
	if c, derr := d.lookup(id); c != nil || derr != nil {
		if derr != nil {
			return nil, derr
		}
		return c, nil
	}
	u, err := d.checkURL(id)
	if err != nil {
		return nil, err
	}
	select {
	case d.slots <- struct{}{}:
		defer func() { <-d.slots }()
	default:
		return nil, &documentError{"busy", "too many documents are being fetched; try again shortly"}
	}
	c, derr := d.fetch(ctx, u)
	now := d.now()
	e := documentEntry{c: c, until: now.Add(failedDocumentCache)}
	if derr != nil {
		e.err = derr
	} else {
		e.until = now.Add(c.ttl)
	}
	d.put(id, e, now)
	if derr != nil {
		return nil, derr
	}
	return c, nil
}

// put caches an entry, making room first: expired entries go, then any.
func (d *MetadataDocuments) put(id string, e documentEntry, now time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.cache) >= d.MaxEntries {
		for k, old := range d.cache {
			if !now.Before(old.until) {
				delete(d.cache, k)
			}
		}
		for k := range d.cache {
			if len(d.cache) < d.MaxEntries {
				break
			}
			delete(d.cache, k) // a refetch is all it costs
		}
	}
	d.cache[id] = e
}

// fetch GETs and parses the document at u.
func (d *MetadataDocuments) fetch(ctx context.Context, u *url.URL) (*client, *documentError) {
	id := u.String()
	status, header, body, err := d.client.GetWithHeader(ctx, id, "application/json")
	switch {
	case errors.Is(err, fetch.ErrTooLarge):
		return nil, &documentError{"too_large", fmt.Sprintf("it is larger than %d bytes", DocumentMaxBytes)}
	case errors.Is(err, fetch.ErrRedirect) || err == nil && status >= 300 && status < 400:
		return nil, &documentError{"redirect", "its URL redirects, and a document must be served at its client ID"}
	case errors.Is(err, fetch.ErrAddress):
		return nil, &documentError{"address", "its host has no public address"}
	case err != nil:
		return nil, &documentError{"fetch", "it could not be fetched"}
	case status != http.StatusOK:
		return nil, &documentError{"status", fmt.Sprintf("its server answered %d", status)}
	}
	c, derr := d.parse(id, body)
	if derr != nil {
		return nil, derr
	}
	c.ttl = cacheLifetime(header, d.now())
	return c, nil
}

// checkURL applies the draft's rules for a client_id URL (§3): https, a
// host, a path, no userinfo, fragment, query or dot segments; and the
// host allow-list.
func (d *MetadataDocuments) checkURL(id string) (*url.URL, error) {
	bad := func(why string) error {
		return &documentError{"invalid", "its client ID is not a valid metadata document URL (" + why + ")"}
	}
	if len(id) > 2048 {
		return nil, bad("too long")
	}
	u, err := url.Parse(id)
	switch {
	case err != nil:
		return nil, bad("not a URL")
	case u.Scheme != "https" || u.Host == "" || u.Opaque != "":
		return nil, bad("not an https URL")
	case u.User != nil:
		return nil, bad("it has userinfo")
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.Contains(id, "#"):
		return nil, bad("it has a query or fragment")
	case u.Path == "" || u.Path == "/":
		return nil, bad("it has no path")
	}
	for _, seg := range strings.Split(u.EscapedPath(), "/") {
		if seg == "." || seg == ".." || strings.EqualFold(seg, "%2e") || strings.EqualFold(seg, "%2e%2e") {
			return nil, bad("it has dot segments")
		}
	}
	if len(d.AllowHosts) > 0 && !hostAllowed(d.AllowHosts, strings.ToLower(u.Hostname())) {
		return nil, &documentError{"host", "its host " + u.Hostname() + " is not allowed"}
	}
	return u, nil
}

// hostAllowed matches host against exact names and *.domain patterns.
func hostAllowed(patterns []string, host string) bool {
	for _, p := range patterns {
		p = strings.ToLower(p)
		if sub, ok := strings.CutPrefix(p, "*."); ok {
			if strings.HasSuffix(host, "."+sub) {
				return true
			}
		} else if host == p {
			return true
		}
	}
	return false
}

// parse reads a document as client metadata and builds its public client.
func (d *MetadataDocuments) parse(id string, body []byte) (*client, *documentError) {
	invalid := func(why string) *documentError {
		return &documentError{"invalid", "it is not valid client metadata: " + why}
	}
	var own struct {
		ClientID     *string         `json:"client_id"`
		ClientSecret json.RawMessage `json:"client_secret"`
	}
	if err := json.Unmarshal(body, &own); err != nil {
		return nil, invalid("not a JSON object")
	}
	// Draft §4.1: the document names itself.
	if own.ClientID == nil || *own.ClientID != id {
		return nil, &documentError{"mismatch", "its client_id is not the URL it was fetched from"}
	}
	if own.ClientSecret != nil {
		return nil, invalid("it has a client_secret")
	}
	m, merr := ParseClientMetadata(body, false)
	if merr != nil {
		return nil, invalid(merr.Error())
	}
	if m.TokenEndpointAuthMethod != "" && m.TokenEndpointAuthMethod != AuthMethodNone {
		return nil, invalid("token_endpoint_auth_method must be none: this server knows no keys of such a client")
	}
	var grants []string
	for _, g := range m.GrantTypes {
		if (g == grantAuthorizationCode || g == grantRefreshToken) && !slices.Contains(grants, g) {
			grants = append(grants, g)
		}
	}
	if len(grants) == 0 {
		grants = []string{grantAuthorizationCode, grantRefreshToken}
	}
	scopes := d.Scopes
	if asked := m.Scopes(); len(asked) > 0 {
		scopes = nil
		for _, sc := range asked {
			if slices.Contains(d.Scopes, sc) && !slices.Contains(scopes, sc) {
				scopes = append(scopes, sc)
			}
		}
	}
	c, err := newClient(id, &Client{
		ID:           id,
		RedirectURIs: m.RedirectURIs,
		GrantTypes:   grants,
		Scopes:       scopes,
		Name:         m.ClientName,
		LogoURI:      m.LogoURI,
	})
	if err != nil {
		return nil, invalid(err.Error())
	}
	c.document = true
	return c, nil
}

// cacheLifetime is how long a document is kept: its Cache-Control max-age
// (or Expires), within [MinDocumentCache, MaxDocumentCache]; the minimum
// when it says nothing or forbids caching, which would refetch it on every
// request.
func cacheLifetime(h http.Header, now time.Time) time.Duration {
	ttl := time.Duration(0)
	found := false
	for _, dir := range strings.Split(h.Get("Cache-Control"), ",") {
		name, val, _ := strings.Cut(strings.TrimSpace(dir), "=")
		if strings.EqualFold(name, "max-age") {
			if n, err := strconv.ParseInt(strings.Trim(val, `"`), 10, 64); err == nil && n >= 0 {
				ttl, found = time.Duration(min(n, int64(MaxDocumentCache/time.Second)))*time.Second, true
			}
		}
	}
	if !found {
		if t, err := http.ParseTime(h.Get("Expires")); err == nil {
			ttl = t.Sub(now)
		}
	}
	return min(max(ttl, MinDocumentCache), MaxDocumentCache)
}
