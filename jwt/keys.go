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
	"encoding/pem"
	"errors"
	"fmt"
	"time"

	"github.com/go-jose/go-jose/v4"
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
func Generate(now time.Time) (*Key, error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
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
// derived from the app's token secret, so that a store dump alone does not
// give away the signing keys. The key id is the associated data: a sealed
// key cannot be passed off under another id.
type Sealer struct{ aead cipher.AEAD }

// NewSealer derives the sealing key from secret.
func NewSealer(secret []byte) *Sealer {
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte("oauth2 jwt signing key sealing"))
	block, err := aes.NewCipher(mac.Sum(nil))
	if err != nil {
		panic(err) // a 32-byte key is always valid
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		panic(err)
	}
	return &Sealer{aead: aead}
}

// Seal returns the key's private half, PKCS#8 encoded and encrypted.
func (s *Sealer) Seal(k *Key) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k.Private)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, s.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return s.aead.Seal(nonce, nonce, der, []byte(k.ID)), nil
}

// ErrSealedElsewhere reports a sealed key that does not open with this
// secret: another token_secret sealed it.
var ErrSealedElsewhere = errors.New("jwt: the signing key was sealed under another token secret")

// Open decrypts a sealed key and checks it is the key id says.
func (s *Sealer) Open(id string, sealed []byte, createdAt time.Time) (*Key, error) {
	n := s.aead.NonceSize()
	if len(sealed) < n {
		return nil, ErrSealedElsewhere
	}
	der, err := s.aead.Open(nil, sealed[:n], sealed[n:], []byte(id))
	if err != nil {
		return nil, ErrSealedElsewhere
	}
	priv, err := x509.ParsePKCS8PrivateKey(der)
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
	k.CreatedAt = createdAt
	return k, nil
}
