package dpop

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"
	"math/big"
	"strings"
	"testing"
	"time"
)

// BenchmarkVerify measures one full proof verification (parse, key,
// thumbprint, signature, claims, replay insert) against the bare signature
// check, the floor (issue 19: the guard's extra cost at most 1.2x that).
func BenchmarkVerify(b *testing.B) {
	for _, alg := range []string{"ES256", "EdDSA"} {
		hdr := map[string]any{"typ": "dpop+jwt", "alg": alg, "jwk": keyFor(b, alg)}
		req := Request{Method: "GET", URL: target, AccessToken: "tok"}
		b.Run(alg+"/verify", func(b *testing.B) {
			// Distinct jti per proof, signed beforehand, so the replay cache is exercised.
			proofs := make([]string, 4096)
			for i := range proofs {
				c := baseClaims()
				c["jti"] = fmt.Sprint(i)
				proofs[i] = sign(b, hdr, c, alg)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if i%len(proofs) == 0 {
					b.StopTimer()
					v := &Verifier{Replay: NewReplayCache(1<<20, 64), Now: func() time.Time { return t0 }}
					b.StartTimer()
					benchV = v
				}
				if _, err := benchV.Verify(proofs[i%len(proofs)], req); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(alg+"/signature", func(b *testing.B) {
			p := sign(b, hdr, baseClaims(), alg)
			dot := strings.LastIndexByte(p, '.')
			in, sig := []byte(p[:dot]), mustB64(p[dot+1:])
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				var ok bool
				if alg == "EdDSA" {
					ok = ed25519.Verify(edPub, in, sig)
				} else {
					d := sha256.Sum256(in)
					ok = ecdsa.Verify(&ecKey.PublicKey, d[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:]))
				}
				if !ok {
					b.Fatal("signature")
				}
			}
		})
	}
}

var benchV *Verifier

func mustB64(s string) []byte { b, _ := b64.DecodeString(s); return b }
