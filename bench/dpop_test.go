package bench_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	josejwt "github.com/go-jose/go-jose/v4/jwt"
)

// BenchmarkCaddyGuardedDPoP is BenchmarkCaddyGuarded with a DPoP-bound
// token (RFC 9449): every request carries a fresh proof, signed
// beforehand, which the guard verifies (signature, claims, ath, jti into
// the replay cache). Against BenchmarkCaddyGuarded the difference is the
// proof's cost; dpop's BenchmarkVerify measures one verification alone.
func BenchmarkCaddyGuardedDPoP(b *testing.B) {
	for _, alg := range []jose.SignatureAlgorithm{jose.ES256, jose.EdDSA} {
		b.Run(string(alg), func(b *testing.B) {
			s := server(b, "opaque")
			var key crypto.Signer
			if alg == jose.EdDSA {
				_, key, _ = ed25519.GenerateKey(rand.Reader)
			} else {
				key, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			}
			signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, (&jose.SignerOptions{EmbedJWK: true}).WithType("dpop+jwt"))
			if err != nil {
				b.Fatal(err)
			}
			proof := func(method, htu, ath string) string {
				c := map[string]any{"jti": rand.Text(), "htm": method, "htu": htu, "iat": time.Now().Unix()}
				if ath != "" {
					c["ath"] = ath
				}
				p, err := josejwt.Signed(signer).Claims(c).Serialize()
				if err != nil {
					b.Fatal(err)
				}
				return p
			}
			// The token endpoint's URL: the bench server's issuer comes from
			// its listener address, which the site's origin names.
			var md struct{ TokenEndpoint string }
			md.TokenEndpoint = "http://" + s.Listen[0] + "/oauth2/token"
			r := httptest.NewRequest(http.MethodPost, "/oauth2/token", strings.NewReader("grant_type=client_credentials&scope=read"))
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			r.SetBasicAuth("bench", "bench-secret")
			r.Header.Set("DPoP", proof("POST", md.TokenEndpoint, ""))
			w := httptest.NewRecorder()
			s.ServeHTTP(w, r)
			var resp struct {
				AccessToken, TokenType string `json:"-"`
			}
			var raw map[string]any
			_ = json.Unmarshal(w.Body.Bytes(), &raw)
			resp.AccessToken, _ = raw["access_token"].(string)
			resp.TokenType, _ = raw["token_type"].(string)
			if resp.TokenType != "DPoP" {
				b.Fatalf("token endpoint: %d %s", w.Code, w.Body)
			}
			sum := sha256.Sum256([]byte(resp.AccessToken))
			ath := base64.RawURLEncoding.EncodeToString(sum[:])
			proofs := make([]string, b.N)
			for i := range proofs {
				proofs[i] = proof("GET", "http://example.com/guarded", ath)
			}
			auth := "DPoP " + resp.AccessToken
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				r := httptest.NewRequest(http.MethodGet, "/guarded", nil)
				r.Header.Set("Authorization", auth)
				r.Header.Set("DPoP", proofs[i])
				w := httptest.NewRecorder()
				s.ServeHTTP(w, r)
				if w.Code != http.StatusOK {
					b.Fatal(fmt.Sprintf("status %d %v", w.Code, w.Header().Values("WWW-Authenticate")))
				}
			}
		})
	}
}
