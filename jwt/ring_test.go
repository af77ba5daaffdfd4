package jwt

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	josejwt "github.com/go-jose/go-jose/v4/jwt"

	"github.com/tokengate/caddy-oauth2/stores"
)

// memKeys is a stores.KeyStore in memory, shared by the rings of a test
// as a database is by gateways.
type memKeys struct {
	mu    sync.Mutex
	keys  []stores.SigningKey
	reads int
	down  bool
}

func (m *memKeys) StartKeys(context.Context) error { return nil }

func (m *memKeys) InsertSigningKey(_ context.Context, k *stores.SigningKey) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.down {
		return stores.Unavailable(errors.New("down"))
	}
	m.keys = append(m.keys, *k)
	return nil
}

func (m *memKeys) SigningKeys(context.Context) ([]*stores.SigningKey, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.reads++
	if m.down {
		return nil, stores.Unavailable(errors.New("down"))
	}
	var out []*stores.SigningKey
	for _, k := range m.keys {
		c := k
		out = append(out, &c)
	}
	return out, nil
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func storedRing(t *testing.T, store stores.KeyStore, secret string, clk *clock) *Ring {
	t.Helper()
	r, err := NewRing(RingConfig{Store: store, Sealer: NewSealer([]byte(secret)), Rotation: 24 * time.Hour,
		TokenLifetime: time.Hour, Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func sign(t *testing.T, r *Ring, clk *clock) string {
	t.Helper()
	raw, err := r.Sign(&Claims{Issuer: "https://as.example", Subject: "alice", Audience: []string{"api"}, ClientID: "c",
		IssuedAt: josejwt.NumericDate(clk.now().Unix()), Expiry: josejwt.NumericDate(clk.now().Add(time.Hour).Unix()), ID: "jti-1"})
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func jwksIDs(t *testing.T, r *Ring) []string {
	t.Helper()
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(r.JWKS(), &set); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, k := range set.Keys {
		if !k.IsPublic() {
			t.Fatalf("the JWKS publishes a private key: %s", k.KeyID)
		}
		ids = append(ids, k.KeyID)
	}
	return ids
}

// TestStoredRingSharesAndRotates: two gateways over one store share the
// generated key; after the rotation period a new key signs, and the old one
// stays published, and verifies, until its tokens have expired.
func TestStoredRingSharesAndRotates(t *testing.T) {
	ctx := context.Background()
	store := &memKeys{}
	clk := &clock{t: time.Now()}
	a, b := storedRing(t, store, "secret-0123456789-0123456789-0123", clk), storedRing(t, store, "secret-0123456789-0123456789-0123", clk)
	if _, err := a.Sign(&Claims{}); !errors.Is(err, ErrNoKey) {
		t.Fatalf("signing before the first refresh: %v, want ErrNoKey", err)
	}
	if err := a.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if len(store.keys) != 1 || a.SigningKeyID() != b.SigningKeyID() || a.SigningKeyID() != store.keys[0].ID {
		t.Fatalf("gateways do not share one key: %d stored, %s vs %s", len(store.keys), a.SigningKeyID(), b.SigningKeyID())
	}
	if strings.Contains(string(store.keys[0].Sealed), "PRIVATE") {
		t.Fatal("the key is stored in the clear")
	}
	old := sign(t, a, clk)
	if _, _, err := b.Verify(ctx, old); err != nil {
		t.Fatalf("b verifies a's token: %v", err)
	}
	first := a.SigningKeyID()

	// Shortly before the rotation is due, a new key is made and published,
	// but the old one signs until every gateway has read the new one.
	clk.add(24*time.Hour - time.Minute)
	if err := a.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if len(store.keys) != 2 || a.SigningKeyID() != first {
		t.Fatalf("before the rotation: %d keys, signing %s; want a second key published and %s signing", len(store.keys), a.SigningKeyID(), first)
	}
	if err := b.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if ids := jwksIDs(t, b); len(ids) != 2 || b.SigningKeyID() != first {
		t.Fatalf("b publishes %v and signs with %s, want both keys and %s", ids, b.SigningKeyID(), first)
	}
	clk.add(2 * time.Minute)
	if err := a.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if a.SigningKeyID() == first || len(store.keys) != 2 {
		t.Fatalf("no rotation after the period: %s, %d keys", a.SigningKeyID(), len(store.keys))
	}
	fresh := sign(t, a, clk)
	before := store.reads
	if _, _, err := b.Verify(ctx, fresh); err != nil {
		t.Fatalf("b verifies a token of the rotated key: %v", err)
	}
	if store.reads != before {
		t.Fatal("b had to read the store for a key it should have known")
	}
	if _, _, err := b.Verify(ctx, old); err != nil {
		t.Fatalf("the retired key no longer verifies: %v", err)
	}
	// Past its ExpiresAt (two rotations and a token's life), the store
	// drops the old key and the rings stop publishing it.
	exp := store.keys[0].ExpiresAt
	if want := store.keys[0].CreatedAt.Add(48*time.Hour + time.Hour); !exp.Equal(want) {
		t.Fatalf("retired key kept until %v, want %v", exp, want)
	}
}

// TestStoredRingOtherSecret: a key sealed under another token_secret is
// neither used nor published; the ring makes its own.
func TestStoredRingOtherSecret(t *testing.T) {
	ctx := context.Background()
	store := &memKeys{}
	clk := &clock{t: time.Now()}
	a := storedRing(t, store, "secret-A-0123456789-0123456789-01", clk)
	b := storedRing(t, store, "secret-B-0123456789-0123456789-01", clk)
	if err := a.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if a.SigningKeyID() == b.SigningKeyID() {
		t.Fatal("a key sealed under another secret was used")
	}
	if _, _, err := b.Verify(ctx, sign(t, a, clk)); !errors.Is(err, ErrInvalid) {
		t.Fatalf("verify across secrets: %v, want ErrInvalid", err)
	}
}

// TestUnknownKidRateLimited: tokens with made-up key ids cause at most one
// store read per interval, and a store that is down is an outage, not a
// verdict on the token.
func TestUnknownKidRateLimited(t *testing.T) {
	ctx := context.Background()
	store := &memKeys{}
	clk := &clock{t: time.Now()}
	r := storedRing(t, store, "secret-0123456789-0123456789-0123", clk)
	if err := r.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	stranger, _ := NewKey(other)
	sr, _ := NewRing(RingConfig{Keys: []*Key{stranger}})
	forged := sign(t, sr, clk)
	clk.add(time.Minute)
	before := store.reads
	for range 100 {
		if _, _, err := r.Verify(ctx, forged); !errors.Is(err, ErrInvalid) {
			t.Fatalf("unknown kid: %v, want ErrInvalid", err)
		}
	}
	if n := store.reads - before; n != 1 {
		t.Fatalf("100 unknown kids read the store %d times, want 1", n)
	}
	store.down = true
	clk.add(time.Minute)
	if _, _, err := r.Verify(ctx, forged); err == nil || errors.Is(err, ErrInvalid) {
		t.Fatalf("unknown kid with the store down: %v, want an outage", err)
	}
}

// TestVerifyRefuses: alg none, another algorithm than the key's, a wrong
// typ and a bad signature are all ErrInvalid.
func TestVerifyRefuses(t *testing.T) {
	ctx := context.Background()
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	k, err := NewKey(ec)
	if err != nil {
		t.Fatal(err)
	}
	r, err := NewRing(RingConfig{Keys: []*Key{k}})
	if err != nil {
		t.Fatal(err)
	}
	clk := &clock{t: time.Now()}
	good := sign(t, r, clk)
	if _, _, err := r.Verify(ctx, good); err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(good, ".")
	enc := func(v string) string { return base64.RawURLEncoding.EncodeToString([]byte(v)) }
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	rs, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: rsaKey, KeyID: k.ID}}, (&jose.SignerOptions{}).WithType(TokenType))
	rsTok, _ := josejwt.Signed(rs).Claims(map[string]any{"iss": "x"}).Serialize()
	noTyp, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: ec, KeyID: k.ID}}, nil)
	jwtTyp, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: ec, KeyID: k.ID}}, (&jose.SignerOptions{}).WithType("JWT"))
	noTypTok, _ := josejwt.Signed(noTyp).Claims(map[string]any{"iss": "x"}).Serialize()
	jwtTypTok, _ := josejwt.Signed(jwtTyp).Claims(map[string]any{"iss": "x"}).Serialize()
	for name, raw := range map[string]string{
		"alg none":           enc(`{"alg":"none","typ":"at+jwt","kid":"`+k.ID+`"}`) + "." + parts[1] + ".",
		"RS256 on an EC key": rsTok,
		"no typ":             noTypTok,
		"typ JWT":            jwtTypTok,
		"bad signature":      parts[0] + "." + parts[1] + "." + parts[2][:len(parts[2])-4] + "AAAA",
		"not a JWT":          "cat_abc",
	} {
		if _, _, err := r.Verify(ctx, raw); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
}

func pemOf(t *testing.T, priv any) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

func TestParsePEM(t *testing.T) {
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	rsa2048, _ := rsa.GenerateKey(rand.Reader, 2048)
	rsa1024, _ := rsa.GenerateKey(rand.Reader, 1024)
	for _, c := range []struct {
		name string
		pem  []byte
		alg  jose.SignatureAlgorithm
	}{
		{"ed25519", pemOf(t, ed), jose.EdDSA},
		{"p256", pemOf(t, p256), jose.ES256},
		{"rsa", pemOf(t, rsa2048), jose.RS256},
		{"rsa pkcs1", pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsa2048)}), jose.RS256},
		{"p384", pemOf(t, p384), ""},
		{"rsa 1024", pemOf(t, rsa1024), ""},
		{"public key", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte{1}}), ""},
		{"garbage", []byte("not pem"), ""},
	} {
		k, err := ParsePEM(c.pem)
		if c.alg == "" {
			if err == nil {
				t.Errorf("%s: accepted", c.name)
			}
			continue
		}
		if err != nil || k.Alg != c.alg || k.ID == "" {
			t.Errorf("%s: %v, %+v", c.name, err, k)
		}
	}
}

// TestLoadBeforeStart: a request before Start's first read loads the keys
// itself; with the store down it gets an error, and reads the store at
// most once per 5s.
func TestLoadBeforeStart(t *testing.T) {
	ctx := context.Background()
	store := &memKeys{down: true}
	clk := &clock{t: time.Now()}
	r := storedRing(t, store, "secret-0123456789-0123456789-0123", clk)
	if err := r.Load(ctx); err == nil {
		t.Fatal("Load with the store down succeeded")
	}
	store.down = false
	if err := r.Load(ctx); !errors.Is(err, ErrNoKey) || store.reads != 1 {
		t.Fatalf("Load right after a failed read: %v, %d reads; want ErrNoKey without a read", err, store.reads)
	}
	clk.add(6 * time.Second)
	if err := r.Load(ctx); err != nil || r.JWKS() == nil {
		t.Fatalf("Load with the store back: %v", err)
	}
	if _, err := r.Sign(&Claims{}); err != nil {
		t.Fatal(err)
	}
}
