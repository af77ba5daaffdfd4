package jwt

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/tokengate/caddy-oauth2/stores"
)

const sealSecret = "a token secret of at least 32 bytes!"

// legacySeal seals k as releases before the dates were authenticated did:
// AES-256-GCM under HMAC(secret, "oauth2 jwt signing key sealing"), the key
// id as the only associated data.
func legacySeal(t *testing.T, secret string, k *Key) []byte {
	t.Helper()
	mac := hmac.New(sha256.New, []byte(secret))
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

func TestSealedKeyDatesAuthenticated(t *testing.T) {
	ctx := context.Background()
	store := &memKeys{}
	clk := &clock{t: time.Now()}
	a := storedRing(t, store, sealSecret, clk)
	if err := a.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	raw := sign(t, a, clk)
	// Someone with write access to the store extends the key's life.
	store.mu.Lock()
	store.keys[0].ExpiresAt = store.keys[0].ExpiresAt.Add(365 * 24 * time.Hour)
	tampered := store.keys[0]
	store.mu.Unlock()
	s := NewSealer([]byte(sealSecret))
	if _, err := s.Open(tampered.ID, tampered.Sealed, tampered.CreatedAt, tampered.ExpiresAt); !errors.Is(err, ErrSealedElsewhere) {
		t.Fatalf("a key with a tampered expires_at opened: %v", err)
	}
	if _, err := s.Open(tampered.ID, tampered.Sealed, tampered.CreatedAt.Add(time.Millisecond), tampered.ExpiresAt.Add(-365*24*time.Hour)); !errors.Is(err, ErrSealedElsewhere) {
		t.Fatalf("a key with a tampered created_at opened: %v", err)
	}
	b := storedRing(t, store, sealSecret, clk)
	if err := b.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if b.SigningKeyID() == tampered.ID || slices.Contains(jwksIDs(t, b), tampered.ID) {
		t.Fatal("the tampered key is used")
	}
	if _, _, err := b.Verify(ctx, raw); !errors.Is(err, ErrInvalid) {
		t.Fatalf("a token of the tampered key verified: %v", err)
	}
}

func TestLegacySealedKeyVerifiesOnly(t *testing.T) {
	ctx := context.Background()
	clk := &clock{t: time.Now()}
	old, err := Generate(clk.now().Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	store := &memKeys{keys: []stores.SigningKey{{ID: old.ID, Sealed: legacySeal(t, sealSecret, old),
		CreatedAt: old.CreatedAt, ExpiresAt: clk.now().Add(48 * time.Hour)}}}
	// A token the key signed before the upgrade.
	signer, err := NewRing(RingConfig{Keys: []*Key{old}})
	if err != nil {
		t.Fatal(err)
	}
	raw := sign(t, signer, clk)

	r := storedRing(t, store, sealSecret, clk)
	if err := r.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.Verify(ctx, raw); err != nil {
		t.Fatalf("a token of a key sealed the old way no longer verifies: %v", err)
	}
	if !slices.Contains(jwksIDs(t, r), old.ID) {
		t.Fatal("the old key is no longer published")
	}
	if r.SigningKeyID() == old.ID {
		t.Fatal("a key whose dates are not authenticated still signs")
	}
	store.mu.Lock()
	n := len(store.keys)
	store.mu.Unlock()
	if n != 2 {
		t.Fatalf("%d keys stored, want the old one and a new one sealed the current way", n)
	}
}
