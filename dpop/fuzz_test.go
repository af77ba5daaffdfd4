package dpop

import (
	"errors"
	"testing"
)

// FuzzVerify feeds arbitrary proofs to the verifier. It never panics, and
// everything it refuses is a typed *Error a caller can answer with.
func FuzzVerify(f *testing.F) {
	ec := pubJWK(f, &ecKey.PublicKey)
	f.Add(sign(f, map[string]any{"typ": "dpop+jwt", "alg": "ES256", "jwk": ec}, baseClaims(), "ES256"))
	f.Add(sign(f, map[string]any{"typ": "dpop+jwt", "alg": "EdDSA", "jwk": pubJWK(f, edPub)}, baseClaims(), "EdDSA"))
	f.Add(sign(f, map[string]any{"typ": "dpop+jwt", "alg": "none", "jwk": ec}, baseClaims(), "none"))
	f.Add(sign(f, map[string]any{"typ": "dpop+jwt", "alg": "RS256", "jwk": map[string]any{"kty": "RSA", "n": "AQAB", "e": "AQAB"}}, baseClaims(), "RS256"))
	f.Add("a.b.c")
	f.Add("..")
	f.Fuzz(func(t *testing.T, proof string) {
		v := verifier()
		p, err := v.Verify(proof, Request{Method: "GET", URL: target, AccessToken: "tok"})
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || (e.Code != CodeInvalidProof && e.Code != CodeUseNonce) || e.Reason == "" {
				t.Fatalf("untyped refusal %v", err)
			}
			return
		}
		if p.JKT == "" || p.JTI == "" {
			t.Fatal("accepted a proof without jkt or jti")
		}
	})
}
