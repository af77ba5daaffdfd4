package token

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"
)

func TestNewIsWellFormedAndUnique(t *testing.T) {
	seen := map[string]bool{}
	for _, prefix := range []string{CodePrefix, AccessPrefix, RefreshPrefix} {
		for i := 0; i < 100; i++ {
			raw, err := New(prefix)
			if err != nil {
				t.Fatal(err)
			}
			if !WellFormed(prefix, raw) {
				t.Fatalf("New(%q) = %q is not well formed", prefix, raw)
			}
			if seen[raw] {
				t.Fatalf("duplicate token %q", raw)
			}
			seen[raw] = true
		}
	}
}

func TestWellFormed(t *testing.T) {
	good, _ := New(AccessPrefix)
	for _, tc := range []struct {
		raw string
		ok  bool
	}{
		{good, true},
		{"crt_" + good[4:], false},           // other kind
		{good[:len(good)-2], false},          // short
		{"cat_" + good[5:], true},            // issued before the format version
		{"cat_3" + good[5:], false},          // an unknown version
		{good + "A", false},                  // long
		{good[:10] + "+" + good[11:], false}, // not base64url
		{"", false},
		{strings.Repeat("x", 47), false},
	} {
		if got := WellFormed(AccessPrefix, tc.raw); got != tc.ok {
			t.Errorf("WellFormed(%q) = %v, want %v", tc.raw, got, tc.ok)
		}
	}
}

func TestHasherKeys(t *testing.T) {
	a, b := NewHasher([]byte("secret one")), NewHasher([]byte("secret two"))
	raw, _ := New(AccessPrefix)
	if a.Key(raw) != a.Key(raw) {
		t.Fatal("Key is not deterministic")
	}
	if a.Key(raw) == b.Key(raw) {
		t.Fatal("Key ignores the secret")
	}
	k := a.Key(raw)
	if len(k) != 64 || strings.Contains(k, raw) {
		t.Fatalf("Key = %q", k)
	}
}

// oldKey is how store keys were computed before the format version: the
// HMAC-SHA256 under the token secret itself.
func oldKey(secret []byte, raw string) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(raw))
	return hex.EncodeToString(m.Sum(nil))
}

func TestHasherKeepsLegacyKeys(t *testing.T) {
	secret := []byte("a token secret of at least 32 bytes!")
	h := NewHasher(secret)
	// A token and a jti issued before the change keep their store keys.
	legacy := "cat_" + strings.Repeat("A", 43)
	jti := NewID()
	for _, raw := range []string{legacy, jti} {
		if !Legacy(raw) || h.Key(raw) != oldKey(secret, raw) {
			t.Errorf("Key(%q) changed: legacy values must keep the key they were stored under", raw)
		}
	}
	// New values are hashed under the derived key, not the secret.
	raw, _ := New(AccessPrefix)
	newJTI := NewJTI()
	for _, v := range []string{raw, newJTI} {
		m := hmac.New(sha256.New, DeriveKey(secret, PurposeStoreHMAC))
		m.Write([]byte(v))
		if Legacy(v) || h.Key(v) != hex.EncodeToString(m.Sum(nil)) || h.Key(v) == oldKey(secret, v) {
			t.Errorf("Key(%q) is not the HMAC under the derived key", v)
		}
	}
}

func TestDerivedKeysDiffer(t *testing.T) {
	secret := []byte("a token secret of at least 32 bytes!")
	store, seal, csrf := DeriveKey(secret, PurposeStoreHMAC), DeriveKey(secret, PurposeKeySealing), DeriveKey(secret, PurposeCSRF)
	if bytes.Equal(store, seal) || bytes.Equal(store, csrf) || bytes.Equal(seal, csrf) || bytes.Equal(store, secret) {
		t.Fatal("the derived keys are not distinct")
	}
	// RFC 5869 is deterministic, and a key differs with its secret.
	if !bytes.Equal(seal, DeriveKey(secret, PurposeKeySealing)) || bytes.Equal(seal, DeriveKey([]byte("another secret of at least 32 bytes"), PurposeKeySealing)) {
		t.Fatal("DeriveKey is not a function of the secret and purpose")
	}
	// No store key is the sealing key: not of a value of any shape naming it.
	h := NewHasher(secret)
	for _, in := range []string{PurposeKeySealing, "oauth2 jwt signing key sealing"} {
		if h.Key(in) == hex.EncodeToString(seal) {
			t.Fatal("a store key equals the sealing key")
		}
	}
}

func BenchmarkNew(b *testing.B) {
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := New(AccessPrefix); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkHasherKey(b *testing.B) {
	h := NewHasher([]byte("bench secret"))
	raw, _ := New(AccessPrefix)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			_ = h.Key(raw)
		}
	})
}
