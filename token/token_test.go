package token

import (
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
		{good[:len(good)-1], false},          // short
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
