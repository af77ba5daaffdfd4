package issuer

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"mime"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tokengate/caddy-oauth2/stores"
	"github.com/tokengate/caddy-oauth2/token"
)

// fuzzServer is a Server over a fake store; the subject is the X-Test-User
// header.
func fuzzServer(t testing.TB) *Server {
	clock := newClock()
	store := newFakeStore(clock.Now)
	s, err := New(Config{Clients: testClients(t), Codes: store, Tokens: store, Hasher: token.NewHasher([]byte("fuzz hmac secret")),
		Subject: func(r *http.Request) string { return r.Header.Get("X-Test-User") }, Now: clock.Now, CSRFKey: []byte("fuzz csrf key")})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// checkRedirect fails unless a response's Location, if any, starts with a
// redirect URI registered for the client the request names, and with the
// redirect_uri parameter when the request has one (RFC 6749 §10.15).
func checkRedirect(t *testing.T, what string, w *httptest.ResponseRecorder, params url.Values) {
	t.Helper()
	loc := w.Header().Get("Location")
	if loc == "" {
		if w.Code/100 == 3 {
			t.Fatalf("%s: status %d without Location", what, w.Code)
		}
		return
	}
	if w.Code != http.StatusFound && w.Code != http.StatusSeeOther {
		t.Fatalf("%s: Location %q with status %d", what, loc, w.Code)
	}
	var registered []string
	if ids := params["client_id"]; len(ids) == 1 {
		if c := testClients(t)[ids[0]]; c != nil {
			registered = c.RedirectURIs
		}
	}
	if rs := params["redirect_uri"]; len(rs) == 1 && rs[0] != "" {
		if !slices.Contains(registered, rs[0]) {
			t.Fatalf("%s: redirected to %q for unregistered redirect_uri %q", what, loc, rs[0])
		}
		registered = rs
	}
	for _, r := range registered {
		if strings.HasPrefix(loc, r+"?") || strings.Contains(r, "?") && strings.HasPrefix(loc, r+"&") {
			return
		}
	}
	t.Fatalf("%s: redirected to %q, not to a registered URI of client %q", what, loc, params["client_id"])
}

// FuzzConsent submits the consent form (POST /oauth2/authorize) with
// arbitrary authorization parameters and CSRF values, after a GET of the
// same request that may render the form. Nothing is ever 5xx or redirected
// to an unregistered URI, and a code is only issued for the resource owner
// the form was rendered for, with the CSRF token rendered in it and an
// approving decision.
//
// mode&3 picks the csrf_token sent: 0 the fuzzed one, 1 the rendered one,
// 2 the rendered one followed by the fuzzed one, 3 none added. mode&4 adds
// decision=approve; mode&8 posts as another user.
func FuzzConsent(f *testing.F) {
	_, challenge := fuzzPKCE()
	for _, p := range []string{
		"response_type=code&client_id=conf&scope=read&state=xyz",
		"response_type=code&client_id=conf&redirect_uri=" + url.QueryEscape(confRedirect) + "&scope=read+write",
		"response_type=code&client_id=pub&code_challenge=" + challenge + "&code_challenge_method=S256",
		"response_type=code&client_id=skip",
		"response_type=code&client_id=multi&redirect_uri=https%3A%2F%2Fm.example%2Fb",
		"response_type=code&client_id=multi",
		"response_type=code&client_id=conf&redirect_uri=https%3A%2F%2Fevil.example%2Fcb",
		"response_type=token&client_id=conf&state=s",
		"client_id=conf&client_id=pub",
		"response_type=code&client_id=ccredir",
		"response_type=code&client_id=conf&scope=%zz",
		"",
	} {
		for _, mode := range []uint8{0, 1, 2, 3, 4, 5, 6, 13} {
			f.Add(p, "1893553445.AAAA", mode, "")
		}
	}
	f.Add("response_type=code&client_id=conf", "", uint8(5), "application/x-www-form-urlencoded; charset=utf-8")
	f.Add("response_type=code&client_id=conf", "", uint8(5), "text/plain")

	s := fuzzServer(f)
	f.Fuzz(func(t *testing.T, params, csrf string, mode uint8, ctype string) {
		get := httptest.NewRequest(http.MethodGet, "http://auth.example"+AuthorizePath, nil)
		get.URL.RawQuery = params
		get.Header.Set("X-Test-User", testUser)
		w := httptest.NewRecorder()
		s.Endpoint(AuthorizePath).ServeHTTP(w, get)
		if w.Code >= 500 {
			t.Fatalf("GET ?%s: status %d", params, w.Code)
		}
		getParams, _ := url.ParseQuery(params)
		checkRedirect(t, "GET", w, getParams)
		var rendered string
		if w.Code == http.StatusOK {
			rendered = hiddenFields(w.Body.String()).Get(csrfField)
		}

		body := params
		switch mode & 3 {
		case 0:
			body += "&" + csrfField + "=" + url.QueryEscape(csrf)
		case 1:
			body += "&" + csrfField + "=" + url.QueryEscape(rendered)
		case 2:
			body += "&" + csrfField + "=" + url.QueryEscape(rendered+csrf)
		}
		if mode&4 != 0 {
			body += "&" + decisionField + "=" + decisionApprove
		}
		user := testUser
		if mode&8 != 0 {
			user = "mallory"
		}
		if ctype == "" {
			ctype = "application/x-www-form-urlencoded"
		}
		post := httptest.NewRequest(http.MethodPost, "http://auth.example"+AuthorizePath, strings.NewReader(body))
		post.Header.Set("Content-Type", ctype)
		post.Header.Set("X-Test-User", user)
		w = httptest.NewRecorder()
		s.Endpoint(AuthorizePath).ServeHTTP(w, post)
		if w.Code >= 500 {
			t.Fatalf("POST %q: status %d", body, w.Code)
		}
		form, err := url.ParseQuery(body)
		if err != nil {
			if w.Code < 400 {
				t.Fatalf("POST malformed %q: status %d", body, w.Code)
			}
			return
		}
		checkRedirect(t, "POST", w, form)

		loc, _ := url.Parse(w.Header().Get("Location"))
		if loc == nil || loc.Query().Get("code") == "" {
			return
		}
		mt, _, _ := mime.ParseMediaType(ctype)
		switch {
		case mt != "application/x-www-form-urlencoded":
			t.Fatalf("POST %q as %q: code issued", body, ctype)
		case rendered == "" || len(form[csrfField]) != 1 || form.Get(csrfField) != rendered:
			t.Fatalf("POST %q: code issued without the CSRF token rendered for the request (%q)", body, rendered)
		case user != testUser:
			t.Fatalf("POST %q: code issued to %s with %s's CSRF token", body, user, testUser)
		case form.Get(decisionField) != decisionApprove:
			t.Fatalf("POST %q: code issued without approval", body)
		case w.Code != http.StatusSeeOther:
			t.Fatalf("POST %q: code issued with status %d", body, w.Code)
		}
	})
}

// swapStore lets one Server run over a fresh fakeStore per fuzz input.
type swapStore struct{ *fakeStore }

// fuzzPKCE returns a fixed verifier and its S256 challenge.
func fuzzPKCE() (verifier, challenge string) {
	verifier = strings.Repeat("v", 43)
	sum := sha256.Sum256([]byte(verifier))
	return verifier, base64.RawURLEncoding.EncodeToString(sum[:])
}

// Fixed code and refresh token, valid in every fuzzTokenServer.
var (
	fuzzCode    = token.CodePrefix + strings.Repeat("C", 43)
	fuzzRefresh = token.RefreshPrefix + strings.Repeat("R", 43)
)

// tokenErrorCodes are the error codes the token endpoint may answer (RFC
// 6749 §5.2, plus temporarily_unavailable for 503).
var tokenErrorCodes = map[int][]string{
	http.StatusBadRequest: {errCodeInvalidRequest, errCodeInvalidGrant, errCodeUnauthorizedClient,
		errCodeUnsupportedGrantType, errCodeInvalidScope},
	http.StatusUnauthorized:          {errCodeInvalidClient},
	http.StatusRequestEntityTooLarge: {errCodeInvalidRequest},
	http.StatusServiceUnavailable:    {errCodeTemporarilyUnavailable},
	// A client_id or address locked after repeated failures (the fuzzer
	// fails a lot against one server).
	http.StatusTooManyRequests: {errCodeTemporarilyUnavailable},
}

// FuzzTokenEndpoint posts arbitrary bodies, content types and
// Authorization headers to the token endpoint of a server holding one live
// code (client conf, PKCE) and one live refresh token (client pub). It
// answers 200 only to the right credentials and grant, never 5xx except 503
// when the store fails, and every error is RFC 6749 §5.2 JSON.
//
// nauth is how many times auth is sent (mod 3); failStore makes every store
// call fail.
func FuzzTokenEndpoint(f *testing.F) {
	verifier, _ := fuzzPKCE()
	basic := func(id, secret string) string {
		return "Basic " + base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(id)+":"+url.QueryEscape(secret)))
	}
	form := "application/x-www-form-urlencoded"
	for _, seed := range []struct{ body, auth string }{
		{"grant_type=authorization_code&code=" + fuzzCode + "&code_verifier=" + verifier + "&redirect_uri=" + url.QueryEscape(confRedirect), basic("conf", confSecret)},
		{"grant_type=authorization_code&code=" + fuzzCode + "&code_verifier=" + verifier + "&client_id=conf&client_secret=" + url.QueryEscape(confSecret), ""},
		{"grant_type=refresh_token&refresh_token=" + fuzzRefresh + "&client_id=pub", ""},
		{"grant_type=refresh_token&refresh_token=" + fuzzRefresh + "&scope=read", basic("pub", "")},
		{"grant_type=client_credentials&scope=svc.read", basic("svc", svcSecret)},
		{"grant_type=client_credentials&client_id=svc&client_secret=" + svcSecret, ""},
		{"grant_type=client_credentials", basic("svc", "wrong")},
		{"grant_type=password&username=a&password=b", basic("conf", confSecret)},
		{"grant_type=authorization_code&code=" + fuzzCode, basic("pub", "")},
		{"grant_type=refresh_token&refresh_token=" + fuzzRefresh + "&refresh_token=x&client_id=pub", ""},
		{"grant_type=client_credentials&client_id=conf", basic("svc", svcSecret)},
		{"%zz", ""},
		{"", "Bearer x"},
	} {
		n := uint8(1)
		if seed.auth == "" {
			n = 0
		}
		f.Add(seed.body, form, seed.auth, n, false)
	}
	f.Add("grant_type=client_credentials", "text/plain", basic("svc", svcSecret), uint8(1), false)
	f.Add("grant_type=client_credentials", form+"; charset=utf-8", basic("svc", svcSecret), uint8(2), false)
	f.Add("grant_type=refresh_token&refresh_token="+fuzzRefresh+"&client_id=pub", form, "", uint8(0), true)

	// One server, so that the secret memo spares a bcrypt per request, over
	// a fresh store per input.
	clock := newClock()
	sw := &swapStore{}
	s, err := New(Config{Clients: testClients(f), Codes: sw, Tokens: sw, Hasher: token.NewHasher([]byte("fuzz hmac secret")), Now: clock.Now})
	if err != nil {
		f.Fatal(err)
	}
	_, challenge := fuzzPKCE()
	f.Fuzz(func(t *testing.T, body, ctype, auth string, nauth uint8, failStore bool) {
		store := newFakeStore(clock.Now)
		sw.fakeStore = store
		now := clock.Now()
		ctx := context.Background()
		if err := store.InsertCode(ctx, &stores.Code{Key: s.hasher.Key(fuzzCode), ClientID: "conf", Subject: testUser,
			RedirectURI: confRedirect, Scope: "read write", Family: "fam-code", IssuedAt: now, ExpiresAt: now.Add(time.Minute),
			CodeChallenge: challenge, CodeChallengeMethod: pkceS256}); err != nil {
			t.Fatal(err)
		}
		if err := store.InsertTokens(ctx, &stores.Token{Key: s.hasher.Key(fuzzRefresh), Kind: stores.RefreshToken, ClientID: "pub",
			Subject: testUser, Scope: "read write", Family: "fam-refresh", IssuedAt: now, ExpiresAt: now.Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
		if failStore {
			store.setFail("*")
		}

		r := httptest.NewRequest(http.MethodPost, "http://auth.example"+TokenPath, strings.NewReader(body))
		if ctype != "" {
			r.Header.Set("Content-Type", ctype)
		}
		for range nauth % 3 {
			r.Header.Add("Authorization", auth)
		}
		w := httptest.NewRecorder()
		s.Endpoint(TokenPath).ServeHTTP(w, r)

		what := func() string {
			return "body " + strconv.Quote(body) + " type " + strconv.Quote(ctype) + " auth " + strconv.Quote(auth)
		}
		if ct := w.Header().Get("Content-Type"); ct != "application/json;charset=UTF-8" {
			t.Fatalf("%s: status %d with Content-Type %q", what(), w.Code, ct)
		}
		if w.Header().Get("Cache-Control") != "no-store" {
			t.Fatalf("%s: status %d without Cache-Control: no-store", what(), w.Code)
		}
		if w.Code == http.StatusOK {
			checkTokenSuccess(t, what(), r, w, body)
			return
		}
		codes, ok := tokenErrorCodes[w.Code]
		if !ok {
			t.Fatalf("%s: status %d", what(), w.Code)
		}
		var e map[string]any
		if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil {
			t.Fatalf("%s: status %d with body %q: %v", what(), w.Code, w.Body, err)
		}
		code, _ := e["error"].(string)
		if !slices.Contains(codes, code) {
			t.Fatalf("%s: status %d with error %q", what(), w.Code, code)
		}
		for k, v := range e {
			switch k {
			case "error":
			case "error_description":
				d, _ := v.(string)
				for i := 0; i < len(d); i++ {
					if c := d[i]; c < 0x20 || c == 0x22 || c == 0x5c || c > 0x7e { // RFC 6749 §5.2
						t.Fatalf("%s: error_description %q", what(), d)
					}
				}
			default:
				t.Fatalf("%s: unexpected member %q in error %s", what(), k, w.Body)
			}
		}
		if (w.Code == http.StatusUnauthorized) != (w.Header().Get("WWW-Authenticate") != "") {
			t.Fatalf("%s: status %d with WWW-Authenticate %q", what(), w.Code, w.Header().Get("WWW-Authenticate"))
		}
		if w.Code == http.StatusServiceUnavailable && !failStore {
			t.Fatalf("%s: 503 with a working store", what())
		}
		if w.Code == http.StatusTooManyRequests && w.Header().Get("Retry-After") == "" {
			t.Fatalf("%s: 429 without Retry-After", what())
		}
	})
}

// checkTokenSuccess fails unless a 200 from the token endpoint went to a
// request with valid client credentials and a valid grant, and is an RFC
// 6749 §5.1 response.
func checkTokenSuccess(t *testing.T, what string, r *http.Request, w *httptest.ResponseRecorder, body string) {
	t.Helper()
	form, err := url.ParseQuery(body)
	if err != nil {
		t.Fatalf("%s: 200 for a malformed body", what)
	}
	// The client credentials as RFC 6749 §2.3.1 defines them.
	id, secret := form.Get("client_id"), form.Get("client_secret")
	if hs := r.Header.Values("Authorization"); len(hs) > 0 {
		u, p, ok := r.BasicAuth()
		if len(hs) != 1 || !ok {
			t.Fatalf("%s: 200 with Authorization %q", what, hs)
		}
		id, _ = url.QueryUnescape(u)
		secret, _ = url.QueryUnescape(p)
	}
	if want, confidential := secrets[id]; confidential && secret != want || !confidential && (id != "pub" || secret != "") {
		t.Fatalf("%s: 200 for client %q with secret %q", what, id, secret)
	}
	verifier, _ := fuzzPKCE()
	switch form.Get("grant_type") {
	case grantAuthorizationCode:
		if id != "conf" || form.Get("code") != fuzzCode || form.Get("code_verifier") != verifier {
			t.Fatalf("%s: 200 for a code grant", what)
		}
	case grantRefreshToken:
		if id != "pub" || form.Get("refresh_token") != fuzzRefresh {
			t.Fatalf("%s: 200 for a refresh grant", what)
		}
	case grantClientCredentials:
		if id != "svc" && id != "ccredir" && id != "conf" && id != "multi" && id != "skip" {
			t.Fatalf("%s: 200 for client_credentials to %q", what, id)
		}
	default:
		t.Fatalf("%s: 200 for grant_type %q", what, form.Get("grant_type"))
	}
	var resp tokenResponse
	if err := json.Unmarshal(w.Body.Bytes(), &resp); err != nil {
		t.Fatalf("%s: 200 with body %q: %v", what, w.Body, err)
	}
	if !token.WellFormed(token.AccessPrefix, resp.AccessToken) || resp.TokenType != "Bearer" || resp.ExpiresIn <= 0 {
		t.Fatalf("%s: 200 with body %s", what, w.Body)
	}
}
