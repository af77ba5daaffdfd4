// Package token makes opaque codes and tokens and the keys stores keep them
// under.
//
// A raw value is a kind prefix, the format version and 43 base64url
// characters of 256 random bits. Stores only ever see Hasher.Key of it:
// HMAC-SHA256 under a key derived from the server secret, so a dump of the
// store yields nothing that can be presented.
//
// Every key the app needs is derived from its token secret with HKDF-SHA256
// (RFC 5869) for one purpose (DeriveKey), so that no input to one use (the
// store's HMAC, say) can give away the key of another (sealing signing
// keys). Values issued before the format version existed (no version
// character: 43 characters after the prefix, or a 32-character jti) are
// hashed as they were then, with the secret itself as the HMAC key; their
// shape says which key hashes a value, so a lookup never tries two.
package token

import (
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"hash"
	"strings"
	"sync"
)

// Purposes of the keys derived from the token secret: HKDF's info. Changing
// one changes every key derived for it.
const (
	// PurposeStoreHMAC keys the store keys of codes and tokens.
	PurposeStoreHMAC = "caddy-oauth2 store hmac v2"
	// PurposeKeySealing keys the encryption of stored signing keys.
	PurposeKeySealing = "caddy-oauth2 signing key sealing v2"
	// PurposeCSRF keys the consent page's CSRF tokens.
	PurposeCSRF = "caddy-oauth2 consent csrf v2"
	// PurposeDPoPNonce keys the stateless DPoP server nonces (RFC 9449 §8).
	PurposeDPoPNonce = "dpop-nonce"
)

// DeriveKey returns the 32-byte key for purpose derived from secret with
// HKDF-SHA256 (RFC 5869 §2, no salt: the secret is already a key).
func DeriveKey(secret []byte, purpose string) []byte {
	k, err := hkdf.Key(sha256.New, secret, nil, purpose, 32)
	if err != nil {
		panic(err) // only for a length HKDF cannot give
	}
	return k
}

// Version is the format version character right after the prefix of the
// values New makes (and the first character of NewJTI's): values with it
// are hashed under the derived key.
const Version = '2'

// legacyLen and legacyJTILen are the lengths of the values issued before
// the format version: a prefix and 43 characters, a jti of 32 hex digits.
const (
	legacyLen    = 4 + 43
	legacyJTILen = 32
)

// Prefixes make each kind recognisable in logs and secret scanners, and let
// the revocation endpoint tell the kind without a hint.
const (
	CodePrefix    = "cac_"
	AccessPrefix  = "cat_"
	RefreshPrefix = "crt_"
)

// Ours reports whether raw carries one of this server's prefixes, well
// formed or not: such a value is never handed to another server.
func Ours(raw string) bool {
	return strings.HasPrefix(raw, AccessPrefix) || strings.HasPrefix(raw, RefreshPrefix) ||
		strings.HasPrefix(raw, CodePrefix)
}

// randomBytes is the entropy of every code and token: 256 bits.
const randomBytes = 32

// encodedLen is the length of a raw value after its prefix.
var encodedLen = base64.RawURLEncoding.EncodedLen(randomBytes)

// New returns a fresh raw value with the given prefix (of 4 characters:
// the legacy shapes are known by length).
func New(prefix string) (string, error) {
	var b [randomBytes]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return prefix + string(Version) + base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// WellFormed reports whether raw has the prefix and the shape New gives, or
// gave before the format version. Checking it first keeps junk away from
// the store.
func WellFormed(prefix, raw string) bool {
	if !strings.HasPrefix(raw, prefix) {
		return false
	}
	start := len(prefix)
	switch len(raw) {
	case len(prefix) + encodedLen: // issued before the format version
	case len(prefix) + 1 + encodedLen:
		if raw[start] != Version {
			return false
		}
		start++
	default:
		return false
	}
	for i := start; i < len(raw); i++ {
		c := raw[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// Hasher turns raw values into store keys: HMAC-SHA256 under the key
// derived for PurposeStoreHMAC, or, for the shapes issued before the format
// version, under the secret itself, as they were stored then.
type Hasher struct {
	pool, legacy sync.Pool
}

// keyer is one pooled HMAC with the buffers Key needs, so that hashing on
// the guard's hot path allocates only the returned string.
type keyer struct {
	mac hash.Hash
	in  []byte
	sum [sha256.Size]byte
	hex [2 * sha256.Size]byte
}

// NewHasher returns a Hasher for the token secret.
func NewHasher(secret []byte) *Hasher {
	key := DeriveKey(secret, PurposeStoreHMAC)
	legacy := append([]byte(nil), secret...)
	h := &Hasher{}
	h.pool.New = func() any { return &keyer{mac: hmac.New(sha256.New, key), in: make([]byte, 0, 64)} }
	h.legacy.New = func() any { return &keyer{mac: hmac.New(sha256.New, legacy), in: make([]byte, 0, 64)} }
	return h
}

// Legacy reports whether raw has a shape issued before the format version,
// hashed under the secret itself.
func Legacy(raw string) bool {
	return len(raw) == legacyLen || len(raw) == legacyJTILen
}

// Key returns the hex HMAC-SHA256 of raw, under the key its shape says.
func (h *Hasher) Key(raw string) string {
	pool := &h.pool
	if Legacy(raw) {
		pool = &h.legacy
	}
	k := pool.Get().(*keyer)
	k.mac.Reset()
	k.in = append(k.in[:0], raw...)
	k.mac.Write(k.in)
	k.mac.Sum(k.sum[:0])
	hex.Encode(k.hex[:], k.sum[:])
	key := string(k.hex[:])
	if cap(k.in) <= 1024 { // do not pool the buffer of an outsized input
		pool.Put(k)
	}
	return key
}

// RandomSecret returns a fresh 256-bit secret, for when none is configured.
func RandomSecret() ([]byte, error) {
	b := make([]byte, 32)
	_, err := rand.Read(b)
	return b, err
}

// NewJTI returns a random "jti" for a JWT access token, stored hashed: the
// format version and 32 hex digits.
func NewJTI() string {
	return string(Version) + NewID()
}

// NewID returns a random identifier for a grant family. It is no credential:
// stores keep it as it is.
func NewID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
