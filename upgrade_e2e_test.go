package oauth2

// Issue 16 item 11, key hygiene, through a real Caddy over SQLite: values
// stored before the keys were derived with HKDF (opaque tokens and JWT
// jtis hashed under the token secret itself, a signing key sealed under
// the old key with only its id authenticated) keep working after the
// upgrade, and a stored key whose expires_at was altered is refused.

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddytest"
	josejwt "github.com/go-jose/go-jose/v4/jwt"

	"github.com/tokengate/caddy-oauth2/jwt"
	"github.com/tokengate/caddy-oauth2/stores"
	sqlstore "github.com/tokengate/caddy-oauth2/stores/sql"
)

const (
	upAuthBase  = "http://localhost:21750"
	upAPIBase   = "http://localhost:21751"
	upAdminPort = 21759
	upSecret    = "an upgrade-test token secret of 32+ bytes"
)

func upgradeConfig(dbPath string) string {
	return fmt.Sprintf(`{
	admin localhost:%d
	default_bind 127.0.0.1
	http_port 21750
	https_port 21752
	grace_period 1ns
	skip_install_trust
	oauth2 {
		issuer %s
		token_secret %q
		access_token_format jwt
		access_token_store sql {
			dialect sqlite
			dsn %q
		}
		client svc {
			secret_hash %s
			redirect_uri http://127.0.0.1:9999/cb
			grant_types authorization_code refresh_token client_credentials
			scopes read
			introspect
		}
	}
}
%s {
	oauth2_server
}
%s {
	oauth2_guard read
	respond "ok {http.auth.user.id}"
}
`, upAdminPort, upAuthBase, upSecret, dbPath, secretHash, upAuthBase, upAPIBase)
}

// oldStoreKey is a store key as releases before HKDF computed it.
func oldStoreKey(raw string) string {
	m := hmac.New(sha256.New, []byte(upSecret))
	m.Write([]byte(raw))
	return hex.EncodeToString(m.Sum(nil))
}

// oldSeal seals k as releases before HKDF did.
func oldSeal(t *testing.T, k *jwt.Key) []byte {
	t.Helper()
	mac := hmac.New(sha256.New, []byte(upSecret))
	mac.Write([]byte("oauth2 jwt signing key sealing"))
	block, _ := aes.NewCipher(mac.Sum(nil))
	aead, _ := cipher.NewGCM(block)
	der, err := x509.MarshalPKCS8PrivateKey(k.Private)
	if err != nil {
		t.Fatal(err)
	}
	nonce := make([]byte, aead.NonceSize())
	_, _ = rand.Read(nonce)
	return aead.Seal(nonce, nonce, der, []byte(k.ID))
}

func TestUpgradeKeepsStoredTokensAndKeys(t *testing.T) {
	ctx := context.Background()
	dbPath := filepath.Join(t.TempDir(), "upgrade.db")
	db, err := sqlstore.Open("sqlite", dbPath)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	eng, err := sqlstore.NewEngine(db, "sqlite", sqlstore.Options{CreateSchema: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := eng.Start(ctx); err != nil {
		t.Fatal(err)
	}

	// What an earlier release left in the store: an opaque access token, a
	// refresh token, a signing key and a JWT it signed, whose jti is stored.
	now := time.Now()
	old := func(prefix string) string {
		b := make([]byte, 32)
		_, _ = rand.Read(b)
		return prefix + base64.RawURLEncoding.EncodeToString(b)
	}
	oldAccess, oldRefresh := old("cat_"), old("crt_")
	jti := "0123456789abcdef0123456789abcdef"
	rec := func(kind stores.Kind, key string, ttl time.Duration) *stores.Token {
		return &stores.Token{Key: key, Kind: kind, ClientID: "svc", Subject: "alice", Scope: "read", Family: "fam-old",
			IssuedAt: now, ExpiresAt: now.Add(ttl)}
	}
	if err := eng.InsertTokens(ctx, rec(stores.AccessToken, oldStoreKey(oldAccess), time.Hour), rec(stores.RefreshToken, oldStoreKey(oldRefresh), 24*time.Hour),
		rec(stores.AccessToken, oldStoreKey(jti), time.Hour)); err != nil {
		t.Fatal(err)
	}
	oldKey, err := jwt.Generate(now.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if err := eng.InsertSigningKey(ctx, &stores.SigningKey{ID: oldKey.ID, Sealed: oldSeal(t, oldKey),
		CreatedAt: oldKey.CreatedAt, ExpiresAt: now.Add(48 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	signer, err := jwt.NewRing(jwt.RingConfig{Keys: []*jwt.Key{oldKey}})
	if err != nil {
		t.Fatal(err)
	}
	oldJWT, err := signer.Sign(&jwt.Claims{Issuer: upAuthBase, Subject: "alice", Audience: []string{upAuthBase}, ClientID: "svc", Scope: "read",
		IssuedAt: josejwt.NumericDate(now.Unix()), Expiry: josejwt.NumericDate(now.Add(time.Hour).Unix()), ID: jti})
	if err != nil {
		t.Fatal(err)
	}

	tester := caddytest.NewTester(t).WithDefaultOverrides(caddytest.Config{AdminPort: upAdminPort})
	tester.InitServer(upgradeConfig(dbPath), "caddyfile")
	if t.Failed() {
		t.FailNow()
	}
	guard := func(what, tok string, want int) {
		t.Helper()
		if resp, body := get(t, nil, upAPIBase+"/", tok); resp.StatusCode != want {
			t.Fatalf("%s: guard answered %d, want %d: %s", what, resp.StatusCode, want, body)
		}
	}
	post := func(form url.Values) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, upAuthBase+"/oauth2/token", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth("svc", "s3cret")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&body)
		return resp.StatusCode, body
	}
	guard("an opaque token issued before the upgrade", oldAccess, http.StatusOK)
	guard("a JWT issued before the upgrade, by a key sealed the old way", oldJWT, http.StatusOK)
	st, body := post(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {oldRefresh}})
	if st != 200 {
		t.Fatalf("refreshing a refresh token issued before the upgrade: %d %v", st, body)
	}
	newJWT, _ := body["access_token"].(string)
	guard("the JWT of the refreshed grant", newJWT, http.StatusOK)
	if rt, _ := body["refresh_token"].(string); len(rt) != len(oldRefresh)+1 || rt[4] != '2' {
		t.Fatalf("the new refresh token %q is not of the versioned format", rt)
	}
	// The old key verifies but no longer signs.
	if hdr := decodeSegment(t, newJWT, 0); hdr["kid"] == oldKey.ID {
		t.Fatal("a key sealed without its dates authenticated still signs")
	}

	// Someone with write access to the store extends the new key's life:
	// once reloaded, the gateway refuses the key and the tokens it signed.
	res, err := db.Exec(`UPDATE oauth_signing_keys SET expires_at = expires_at + 31536000000 WHERE key_id <> ?`, oldKey.ID)
	if n, _ := res.RowsAffected(); err != nil || n != 1 {
		t.Fatalf("tampering with the new key: %v (%d rows)", err, n)
	}
	tester.InitServer(strings.Replace(upgradeConfig(dbPath), `respond "ok`, `respond "reloaded`, 1), "caddyfile")
	if t.Failed() {
		t.FailNow()
	}
	guard("a JWT of the key whose expires_at was altered", newJWT, http.StatusUnauthorized)
	guard("the old JWT still", oldJWT, http.StatusOK)
}
