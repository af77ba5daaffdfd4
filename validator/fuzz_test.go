package validator

import (
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tokengate/caddy-oauth2/stores"
	"github.com/tokengate/caddy-oauth2/token"
)

// Fixed, well-formed tokens, so that seeds stay meaningful across runs.
var (
	fuzzGood    = token.AccessPrefix + strings.Repeat("G", 43)
	fuzzNarrow  = token.AccessPrefix + strings.Repeat("N", 43)
	fuzzExpired = token.AccessPrefix + strings.Repeat("E", 43)
	fuzzRefresh = token.RefreshPrefix + strings.Repeat("G", 43)
)

// challengeRE is the shape of every challenge the guard may send (RFC 6750
// §3), with the error code each status allows.
var challengeRE = map[int]*regexp.Regexp{
	http.StatusBadRequest:   regexp.MustCompile(`^Bearer realm="api", error="invalid_request", error_description="[\x20\x21\x23-\x5b\x5d-\x7e]*"$`),
	http.StatusUnauthorized: regexp.MustCompile(`^Bearer realm="api"(, error="invalid_token", error_description="[\x20\x21\x23-\x5b\x5d-\x7e]*")?$`),
	http.StatusForbidden:    regexp.MustCompile(`^Bearer realm="api", error="insufficient_scope", scope="read write"$`),
}

// FuzzCheck drives the guard's decision with arbitrary Authorization
// headers, zero to three of them. Only the one valid token with the
// required scopes passes; everything else is 400, 401 or 403 with an RFC
// 6750 challenge.
func FuzzCheck(f *testing.F) {
	for _, h := range []string{
		"Bearer " + fuzzGood, "bearer " + fuzzGood, "BEARER  " + fuzzGood + " ", "Bearer\t" + fuzzGood,
		"Bearer " + fuzzNarrow, "Bearer " + fuzzExpired, "Bearer " + fuzzRefresh, "Bearer " + fuzzGood + "=",
		"Bearer " + fuzzGood[:len(fuzzGood)-1], "Bearer", "Bearer ", "Basic YWxpY2U6cGFzcw==", "", "\x00",
		"Bearer cat_" + strings.Repeat("\xff", 43), "Bearer " + strings.ToLower(fuzzGood), "Token " + fuzzGood,
	} {
		f.Add(h, "", uint8(1))
		f.Add(h, h, uint8(2))
		f.Add(h, "Bearer "+fuzzGood, uint8(3))
	}
	f.Add("", "", uint8(0))

	h := token.NewHasher([]byte("fuzz secret"))
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	tokens := &fakeTokens{tokens: map[string]*stores.Token{}}
	for raw, scope := range map[string]string{fuzzGood: "write admin read", fuzzNarrow: "read", fuzzExpired: "read write"} {
		exp := now.Add(time.Hour)
		if raw == fuzzExpired {
			exp = now
		}
		tokens.tokens[h.Key(raw)] = &stores.Token{Kind: stores.AccessToken, ClientID: "c", Subject: raw, Scope: scope, ExpiresAt: exp}
	}
	tokens.tokens[h.Key(fuzzRefresh)] = &stores.Token{Kind: stores.RefreshToken, ClientID: "c", Scope: "read write", ExpiresAt: now.Add(time.Hour)}
	v, err := New(Config{Tokens: tokens, Hasher: h, Realm: "api", Scopes: []string{"read", "write"}, Now: func() time.Time { return now }})
	if err != nil {
		f.Fatal(err)
	}

	f.Fuzz(func(t *testing.T, h1, h2 string, n uint8) {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		var headers []string
		for i := range int(n % 4) {
			hv := h1
			if i > 0 {
				hv = h2
			}
			headers = append(headers, hv)
			r.Header.Add("Authorization", hv)
		}
		tok, d := v.Check(r)
		if d == nil {
			if tok == nil || tok.Subject != fuzzGood {
				t.Fatalf("headers %q: passed with token %+v", headers, tok)
			}
			// The one token that may pass, presented once as a bearer.
			if len(headers) != 1 || !strings.EqualFold(headers[0][:min(7, len(headers[0]))], "bearer ") ||
				strings.TrimSpace(headers[0][7:]) != fuzzGood {
				t.Fatalf("headers %q: passed", headers)
			}
			return
		}
		if tok != nil {
			t.Fatalf("headers %q: denied %d but returned a token", headers, d.Status)
		}
		re := challengeRE[d.Status]
		if re == nil {
			t.Fatalf("headers %q: status %d", headers, d.Status)
		}
		if !re.MatchString(d.Challenge) {
			t.Fatalf("headers %q: status %d with challenge %q", headers, d.Status, d.Challenge)
		}
		if d.Err == nil {
			t.Fatalf("headers %q: status %d without a reason", headers, d.Status)
		}
		// Two or more headers are always a malformed request (RFC 6750 §3.1).
		if (len(headers) > 1) != (d.Status == http.StatusBadRequest) {
			t.Fatalf("headers %q: status %d", headers, d.Status)
		}
		// No credentials at all carry no error code (RFC 6750 §3.1).
		if len(headers) == 0 && d.Challenge != `Bearer realm="api"` {
			t.Fatalf("no header: challenge %q", d.Challenge)
		}
	})
}
