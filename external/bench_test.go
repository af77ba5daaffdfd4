package external

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// BenchmarkJWTFirstVerify is a JWT seen for the first time: one ES256
// signature check and the claims (the keys are held).
func BenchmarkJWTFirstVerify(b *testing.B) {
	p := newIDP(b)
	j, err := NewJWT(p.config())
	if err != nil {
		b.Fatal(err)
	}
	tokens := make([]string, b.N)
	for i := range tokens {
		tokens[i] = p.token(b, map[string]any{"jti": fmt.Sprint(i)})
	}
	ctx := context.Background()
	if _, err := j.Verify(ctx, p.token(b, nil)); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if !j.Recognize(tokens[i]) {
			b.Fatal("not recognised")
		}
		if _, err := j.Verify(ctx, tokens[i]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkJWTVerified is a JWT verified before: its hash is found.
func BenchmarkJWTVerified(b *testing.B) {
	p := newIDP(b)
	j, err := NewJWT(p.config())
	if err != nil {
		b.Fatal(err)
	}
	raw := p.token(b, nil)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if !j.Recognize(raw) {
			b.Fatal("not recognised")
		}
		if _, err := j.Verify(ctx, raw); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkIntrospectionCached is an opaque token whose answer is cached.
func BenchmarkIntrospectionCached(b *testing.B) {
	p := newIDP(b)
	p.active["opaque"] = map[string]any{"active": true, "scope": "read", "exp": float64(time.Now().Add(time.Hour).Unix())}
	in := p.introspector(b, time.Hour, nil)
	src := Introspection{in}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if !src.Recognize("opaque") {
			b.Fatal("not recognised")
		}
		if _, err := src.Verify(ctx, "opaque"); err != nil {
			b.Fatal(err)
		}
	}
}
