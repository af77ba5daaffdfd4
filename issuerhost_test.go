package oauth2

// Item 9 of issue 8: without `issuer`, the issuer identifier comes from the
// site's configured address, never from the Host header (RFC 9207's mix-up
// defence relies on it).

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"golang.org/x/oauth2"
)

// forgedHost passes Caddy's host matcher for localhost (the hostname before
// the colon) while naming another origin.
const forgedHost = "LOCALHOST:18500.evil"

// metadataIssuer fetches the metadata document with the given Host header.
func metadataIssuer(t *testing.T, base, host string) map[string]any {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, base+"/.well-known/oauth-authorization-server", nil)
	req.Host = host
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var md map[string]any
	if resp.StatusCode != 200 || json.NewDecoder(resp.Body).Decode(&md) != nil {
		t.Fatalf("metadata with Host %q: %d", host, resp.StatusCode)
	}
	return md
}

func TestIssuerIgnoresHostHeader(t *testing.T) {
	up := newUpstream(t)
	startCaddy(t, testConfig(up.Listener.Addr().String(), "", ""))
	for _, host := range []string{forgedHost, "localhost:9080", "LocalHost:9080", "localhost"} {
		md := metadataIssuer(t, authBase, host)
		if md["issuer"] != authBase || md["token_endpoint"] != authBase+"/oauth2/token" {
			t.Errorf("Host %q: issuer %v, token endpoint %v; want %s", host, md["issuer"], md["token_endpoint"], authBase)
		}
	}

	// The iss authorization response parameter (RFC 9207 §2).
	cfg := &oauth2.Config{
		ClientID:    "app",
		Endpoint:    oauth2.Endpoint{AuthURL: authBase + "/oauth2/authorize"},
		RedirectURL: "http://127.0.0.1:9999/cb",
	}
	req, _ := http.NewRequest(http.MethodGet, cfg.AuthCodeURL("s", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())), nil)
	req.Host = forgedHost
	req.SetBasicAuth("alice", "alice-password")
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusFound || loc.Query().Get("code") == "" {
		t.Fatalf("authorize: %d %s", resp.StatusCode, loc)
	}
	if iss := loc.Query().Get("iss"); iss != authBase {
		t.Errorf("iss = %q, want %q", iss, authBase)
	}
}

// TestIssuerCatchAllOnLoopback: a site without a host, bound to loopback
// only, takes the bound address.
func TestIssuerCatchAllOnLoopback(t *testing.T) {
	startCaddy(t, `{
	admin localhost:2999
	default_bind 127.0.0.1
	http_port 9080
	grace_period 1ns
	oauth2 {
		client svc {
			secret_hash `+secretHash+`
			grant_types client_credentials
		}
	}
}
:9080 {
	oauth2_server
}
`)
	md := metadataIssuer(t, "http://127.0.0.1:9080", "evil.example:9080")
	if md["issuer"] != "http://127.0.0.1:9080" {
		t.Errorf("issuer %v, want http://127.0.0.1:9080", md["issuer"])
	}
}

// TestIssuerAmbiguousRefusesToStart: a wildcard site without `issuer`
// cannot name one issuer, so the config does not load; with `issuer` it does.
func TestIssuerAmbiguousRefusesToStart(t *testing.T) {
	startCaddy(t, testConfig(newUpstream(t).Listener.Addr().String(), "", ""))
	config := func(issuer string) []byte {
		t.Helper()
		cf := `{
	admin localhost:2999
	default_bind 127.0.0.1
	http_port 9080
	grace_period 1ns
	oauth2 {
		` + issuer + `
		client svc {
			secret_hash ` + secretHash + `
			grant_types client_credentials
		}
	}
}
http://*.localhost:9080 {
	oauth2_server
}
`
		js, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(cf), nil)
		if err != nil {
			t.Fatal(err)
		}
		return js
	}
	err := caddy.Load(config(""), true)
	if err == nil || !strings.Contains(err.Error(), "issuer") {
		t.Fatalf("a wildcard site without issuer loaded: %v", err)
	}
	if err := caddy.Load(config("issuer http://auth.localhost:9080"), true); err != nil {
		t.Fatalf("with issuer: %v", err)
	}
	md := metadataIssuer(t, "http://127.0.0.1:9080", "x.localhost:9080")
	if md["issuer"] != "http://auth.localhost:9080" {
		t.Errorf("issuer %v", md["issuer"])
	}
}

// TestIssuerHTTPSSite: a TLS site's issuer is https with the site's port,
// over HTTP/2 as browsers speak it.
func TestIssuerHTTPSSite(t *testing.T) {
	startCaddy(t, `{
	admin localhost:2999
	default_bind 127.0.0.1
	http_port 9080
	https_port 9443
	grace_period 1ns
	skip_install_trust
	oauth2 {
		client svc {
			secret_hash `+secretHash+`
			grant_types client_credentials
		}
	}
}
https://localhost:9443 {
	tls internal
	oauth2_server
}
`)
	client := &http.Client{Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{ServerName: "localhost", InsecureSkipVerify: true},
		ForceAttemptHTTP2: true,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, "127.0.0.1:9443")
		},
	}}
	req, _ := http.NewRequest(http.MethodGet, "https://localhost:9443/.well-known/oauth-authorization-server", nil)
	req.Host = forgedHost
	var resp *http.Response
	var err error
	for try := 0; try < 50; try++ { // the internal certificate is issued in the background
		if resp, err = client.Do(req); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var md map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&md); err != nil || resp.ProtoMajor != 2 {
		t.Fatalf("metadata: %v, %s", err, resp.Proto)
	}
	if md["issuer"] != "https://localhost:9443" {
		t.Errorf("issuer %v, want https://localhost:9443", md["issuer"])
	}
}
