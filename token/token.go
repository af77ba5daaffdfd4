// Package token makes opaque codes and tokens and the keys stores keep them
// under.
//
// A raw value is a kind prefix followed by 43 base64url characters of 256
// random bits. Stores only ever see Hasher.Key of it: HMAC-SHA256 under a
// server secret, so a dump of the store yields nothing that can be presented.
package token

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"hash"
	"strings"
	"sync"
)

// Prefixes make each kind recognisable in logs and secret scanners, and let
// the revocation endpoint tell the kind without a hint.
const (
	CodePrefix    = "cac_"
	AccessPrefix  = "cat_"
	RefreshPrefix = "crt_"
)

// randomBytes is the entropy of every code and token: 256 bits.
const randomBytes = 32

// encodedLen is the length of a raw value after its prefix.
var encodedLen = base64.RawURLEncoding.EncodedLen(randomBytes)

// New returns a fresh raw value with the given prefix.
func New(prefix string) (string, error) {
	var b [randomBytes]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return prefix + base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// WellFormed reports whether raw has the prefix and the shape New gives.
// Checking it first keeps junk away from the store.
func WellFormed(prefix, raw string) bool {
	if len(raw) != len(prefix)+encodedLen || !strings.HasPrefix(raw, prefix) {
		return false
	}
	for i := len(prefix); i < len(raw); i++ {
		c := raw[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// Hasher turns raw values into store keys.
type Hasher struct {
	pool sync.Pool
}

// keyer is one pooled HMAC with the buffers Key needs, so that hashing on
// the guard's hot path allocates only the returned string.
type keyer struct {
	mac hash.Hash
	in  []byte
	sum [sha256.Size]byte
	hex [2 * sha256.Size]byte
}

// NewHasher returns a Hasher keyed by secret.
func NewHasher(secret []byte) *Hasher {
	key := append([]byte(nil), secret...)
	h := &Hasher{}
	h.pool.New = func() any { return &keyer{mac: hmac.New(sha256.New, key), in: make([]byte, 0, 64)} }
	return h
}

// Key returns the hex HMAC-SHA256 of raw.
func (h *Hasher) Key(raw string) string {
	k := h.pool.Get().(*keyer)
	k.mac.Reset()
	k.in = append(k.in[:0], raw...)
	k.mac.Write(k.in)
	k.mac.Sum(k.sum[:0])
	hex.Encode(k.hex[:], k.sum[:])
	key := string(k.hex[:])
	if cap(k.in) <= 1024 { // do not pool the buffer of an outsized input
		h.pool.Put(k)
	}
	return key
}

// RandomSecret returns a fresh 256-bit secret, for when none is configured.
func RandomSecret() ([]byte, error) {
	b := make([]byte, 32)
	_, err := rand.Read(b)
	return b, err
}

// NewID returns a random identifier for a grant family. It is no credential:
// stores keep it as it is.
func NewID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
