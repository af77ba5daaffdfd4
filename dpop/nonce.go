package dpop

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"time"
)

// Nonces issues and checks stateless server nonces (RFC 9449 §8, §9): a
// nonce is a time window's number and its HMAC under a key every gateway
// derives from token_secret, so any gateway accepts any gateway's nonce. A
// nonce is accepted in its own window and the next one.
type Nonces struct {
	key    []byte
	window time.Duration
}

// DefaultNonceWindow is the nonce's window when NewNonces gets 0.
const DefaultNonceWindow = 5 * time.Minute

// NewNonces uses key (at least 32 bytes, derived by the caller from
// token_secret for this purpose only) and a window length.
func NewNonces(key []byte, window time.Duration) *Nonces {
	if window <= 0 {
		window = DefaultNonceWindow
	}
	return &Nonces{key: append([]byte(nil), key...), window: window}
}

func (n *Nonces) mac(w uint64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], w)
	m := hmac.New(sha256.New, n.key)
	m.Write([]byte("dpop-nonce\x00"))
	m.Write(b[:])
	return append(b[:], m.Sum(nil)[:16]...)
}

func (n *Nonces) windowOf(t time.Time) uint64 {
	return uint64(t.UnixNano() / int64(n.window))
}

// Issue returns the nonce of now's window, for the DPoP-Nonce header.
func (n *Nonces) Issue(now time.Time) string {
	return b64.EncodeToString(n.mac(n.windowOf(now)))
}

// Valid says whether nonce was issued in now's window or the one before.
func (n *Nonces) Valid(nonce string, now time.Time) bool {
	if len(nonce) != b64.EncodedLen(24) {
		return false
	}
	b, err := b64.DecodeString(nonce)
	if err != nil || len(b) != 24 {
		return false
	}
	w := binary.BigEndian.Uint64(b[:8])
	cur := n.windowOf(now)
	if w != cur && w+1 != cur {
		return false
	}
	return hmac.Equal(b, n.mac(w))
}
