package oauth2

import (
	"context"
	"net/http/httptest"
	"testing"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// The htu a guard compares a proof with: X-Forwarded-Proto and
// X-Forwarded-Host only when Caddy's trusted_proxies vouch for the peer,
// and the path before any rewrite.
func TestDPoPRequestURL(t *testing.T) {
	for _, c := range []struct {
		name    string
		trusted bool
		want    string
	}{
		{"untrusted peer: forwarded headers ignored", false, "http://api.internal:8080/v1/things"},
		{"trusted proxy: its scheme and host", true, "https://api.example.com/v1/things"},
	} {
		r := httptest.NewRequest("GET", "http://api.internal:8080/things?x=1", nil)
		r.Header.Set("X-Forwarded-Proto", "https")
		r.Header.Set("X-Forwarded-Host", "api.example.com, proxy.internal")
		orig := *httptest.NewRequest("GET", "http://api.internal:8080/v1/things?x=1", nil)
		ctx := context.WithValue(r.Context(), caddyhttp.VarsCtxKey, map[string]any{caddyhttp.TrustedProxyVarKey: c.trusted})
		ctx = context.WithValue(ctx, caddyhttp.OriginalRequestCtxKey, orig)
		if got := requestURL(r.WithContext(ctx)).String(); got != c.want {
			t.Errorf("%s: %s, want %s", c.name, got, c.want)
		}
	}
}
