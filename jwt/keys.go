// Package jwt issues and verifies our own JWT access tokens (RFC 9068):
// signing keys from PEM files or generated and kept sealed in a store, the
// key ring that signs with one key and publishes all live public keys as a
// JWKS (RFC 7517), and the signing and verification themselves, done by
// go-jose.
//
// It knows nothing of Caddy; the adapter builds a Ring and hands it to the
// issuer (to sign and serve the JWKS) and to the validator (to verify).
package jwt

import (
	"bytes"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/tokengate/caddy-oauth2/token"
)

// Key is one signing key: its private half when we sign with it, its
// public half, its key id and algorithm.
type Key struct {
	// ID is the "kid": the RFC 7638 thumbprint of the public key.
	ID string
	// Alg is the only algorithm tokens signed with this key may carry.
	Alg jose.SignatureAlgorithm
	// Private signs; nil for a key only published.
	Private crypto.Signer
	// Public verifies.
	Public crypto.PublicKey
	// CreatedAt is when a generated key was made; zero for key files.
	CreatedAt time.Time
	// Legacy marks a stored key sealed in the format before its dates were
	// authenticated: it verifies, it never signs.
	Legacy bool
}

// NewKey wraps a private key, checking it is one we accept: Ed25519, ECDSA
// P-256 or RSA of at least 2048 bits.
func NewKey(priv crypto.Signer) (*Key, error) {
	var alg jose.SignatureAlgorithm
	switch k := priv.(type) {
	case ed25519.PrivateKey:
		alg = jose.EdDSA
	case *ecdsa.PrivateKey:
		if k.Curve != elliptic.P256() {
			return nil, errors.New("jwt: ECDSA keys must use the P-256 curve")
		}
		alg = jose.ES256
	case *rsa.PrivateKey:
		if k.N.BitLen() < 2048 {
			return nil, errors.New("jwt: RSA keys must have at least 2048 bits")
		}
		alg = jose.RS256
	default:
		return nil, fmt.Errorf("jwt: unsupported key type %T (want Ed25519, ECDSA P-256 or RSA)", priv)
	}
	pub := priv.Public()
	tp, err := (&jose.JSONWebKey{Key: pub}).Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("jwt: key thumbprint: %v", err)
	}
	return &Key{ID: base64.RawURLEncoding.EncodeToString(tp), Alg: alg, Private: priv, Public: pub}, nil
}

// ParsePEM reads a private key from PEM: PKCS#8, or the older PKCS#1 (RSA)
// and SEC 1 (EC) forms.
func ParsePEM(data []byte) (*Key, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("jwt: no PEM block found")
	}
	var priv any
	var err error
	switch block.Type {
	case "PRIVATE KEY":
		priv, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		priv, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		priv, err = x509.ParseECPrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("jwt: PEM block %q is not a private key", block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("jwt: %v", err)
	}
	signer, ok := priv.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("jwt: unsupported key type %T", priv)
	}
	return NewKey(signer)
}

// Generate makes a new ECDSA P-256 key (ES256, the algorithm resource
// servers support most widely).
func Generate(now time.Time) (*Key, error) { return GenerateAlg(jose.ES256, now) }

// GenerateAlg makes a new key of an algorithm: ES256 (P-256) or RS256
// (RSA-2048), created at now.
func GenerateAlg(alg jose.SignatureAlgorithm, now time.Time) (*Key, error) {
	var priv crypto.Signer
	var err error
	switch alg {
	case jose.ES256:
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case jose.RS256:
		priv, err = rsa.GenerateKey(rand.Reader, 2048)
	default:
		return nil, fmt.Errorf("jwt: cannot generate %s keys", alg)
	}
	if err != nil {
		return nil, err
	}
	k, err := NewKey(priv)
	if err != nil {
		return nil, err
	}
	k.CreatedAt = now
	return k, nil
}

// Sealer encrypts private keys at rest with AES-256-GCM under a key
// derived from the app's token secret with HKDF-SHA256 for this purpose
// alone (token.PurposeKeySealing), so that a store dump alone does not give
// away the signing keys. The associated data is the key id and the key's
// created_at and expires_at: a sealed key can be passed off neither under
// another id nor with other dates.
//
// Keys sealed before (format 1: under an HMAC of the secret, the id alone
// authenticated) still open, marked Legacy: their dates are as the store
// says, so the ring only verifies with them, never signs.
type Sealer struct{ aead, legacy cipher.AEAD }

// sealVersion starts a sealed key of the current format. A legacy sealed
// key starts with its random nonce instead, so a first byte of 2 is tried
// as both.
const sealVersion = 2

// NewSealer derives the sealing keys from secret.
func NewSealer(secret []byte) *Sealer {
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte("oauth2 jwt signing key sealing"))
	return &Sealer{aead: newGCM(token.DeriveKey(secret, token.PurposeKeySealing)), legacy: newGCM(mac.Sum(nil))}
}

func newGCM(key []byte) cipher.AEAD {
	block, err := aes.NewCipher(key)
	if err != nil {
		panic(err) // a 32-byte key is always valid
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		panic(err)
	}
	return aead
}

// sealedData is the associated data of a sealed key: its id and its dates
// to the millisecond, which every store keeps exactly.
func sealedData(id string, createdAt, expiresAt time.Time) []byte {
	b := make([]byte, 0, len(id)+32)
	b = append(b, "caddy-oauth2 signing key v2\x00"...)
	b = append(b, id...)
	b = append(b, 0)
	b = binary.BigEndian.AppendUint64(b, uint64(createdAt.UnixMilli()))
	b = binary.BigEndian.AppendUint64(b, uint64(expiresAt.UnixMilli()))
	return b
}

// Seal returns the key's private half, PKCS#8 encoded and encrypted, bound
// to its id and dates. The dates must be those the store keeps: whole
// milliseconds.
func (s *Sealer) Seal(k *Key, createdAt, expiresAt time.Time) ([]byte, error) {
	der, err := sealedForm(k.Private)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 1+s.aead.NonceSize(), 1+s.aead.NonceSize()+len(der)+s.aead.Overhead())
	out[0] = sealVersion
	if _, err := rand.Read(out[1:]); err != nil {
		return nil, err
	}
	return s.aead.Seal(out, out[1:], der, sealedData(k.ID, createdAt, expiresAt)), nil
}

// ErrSealedElsewhere reports a sealed key that does not open with this
// secret: another token_secret sealed it, or its id or dates were changed.
var ErrSealedElsewhere = errors.New("jwt: the signing key was sealed under another token secret, or its id or dates were altered")

// Open decrypts a sealed key and checks it is the key its id says, with
// the dates it was sealed with. A key of the legacy format opens with
// Legacy set.
func (s *Sealer) Open(id string, sealed []byte, createdAt, expiresAt time.Time) (*Key, error) {
	n := s.aead.NonceSize()
	var der []byte
	legacy := false
	if len(sealed) > 1+n && sealed[0] == sealVersion {
		der, _ = s.aead.Open(nil, sealed[1:1+n], sealed[1+n:], sealedData(id, createdAt, expiresAt))
	}
	if der == nil && len(sealed) >= n {
		var err error
		if der, err = s.legacy.Open(nil, sealed[:n], sealed[n:], []byte(id)); err == nil {
			legacy = true
		}
	}
	if der == nil {
		return nil, ErrSealedElsewhere
	}
	var priv any
	var err error
	if bytes.HasPrefix(der, rsaPrimesTag) {
		priv, err = rsaFromPrimes(der[len(rsaPrimesTag):])
	} else {
		priv, err = x509.ParsePKCS8PrivateKey(der)
	}
	if err != nil {
		return nil, fmt.Errorf("jwt: sealed key %s: %v", id, err)
	}
	signer, ok := priv.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("jwt: sealed key %s: unsupported type %T", id, priv)
	}
	k, err := NewKey(signer)
	if err != nil {
		return nil, err
	}
	if k.ID != id {
		return nil, fmt.Errorf("jwt: sealed key %s has thumbprint %s", id, k.ID)
	}
	k.CreatedAt, k.Legacy = createdAt, legacy
	return k, nil
}

// rsaPrimesTag starts the sealed form of an RSA key: its two primes, from
// which the rest is computed again. A PKCS#8 RSA-2048 key (some 1,200
// bytes) sealed and base64 encoded would not fit the stores' signing key
// column (1,024 characters); the primes take 260 bytes. PKCS#8 DER starts
// with 0x30, never with this tag.
var rsaPrimesTag = []byte("rsa-primes\x00")

// sealedForm is what Seal encrypts: PKCS#8, or an RSA key's primes.
func sealedForm(priv crypto.Signer) ([]byte, error) {
	if k, ok := priv.(*rsa.PrivateKey); ok && len(k.Primes) == 2 && k.E == 65537 {
		b := slices.Clone(rsaPrimesTag)
		for _, p := range k.Primes {
			pb := p.Bytes()
			b = binary.BigEndian.AppendUint16(b, uint16(len(pb)))
			b = append(b, pb...)
		}
		return b, nil
	}
	return x509.MarshalPKCS8PrivateKey(priv)
}

// rsaFromPrimes rebuilds an RSA key (e = 65537) from its two primes.
func rsaFromPrimes(b []byte) (*rsa.PrivateKey, error) {
	var primes []*big.Int
	for range 2 {
		if len(b) < 2 {
			return nil, errors.New("truncated RSA primes")
		}
		n := int(binary.BigEndian.Uint16(b))
		if len(b) < 2+n {
			return nil, errors.New("truncated RSA primes")
		}
		primes = append(primes, new(big.Int).SetBytes(b[2:2+n]))
		b = b[2+n:]
	}
	if len(b) != 0 {
		return nil, errors.New("trailing bytes after the RSA primes")
	}
	one := big.NewInt(1)
	p, q := primes[0], primes[1]
	phi := new(big.Int).Mul(new(big.Int).Sub(p, one), new(big.Int).Sub(q, one))
	e := big.NewInt(65537)
	d := new(big.Int).ModInverse(e, phi)
	if d == nil {
		return nil, errors.New("invalid RSA primes")
	}
	k := &rsa.PrivateKey{PublicKey: rsa.PublicKey{N: new(big.Int).Mul(p, q), E: 65537}, D: d, Primes: primes}
	if err := k.Validate(); err != nil {
		return nil, err
	}
	k.Precompute()
	return k, nil
}
