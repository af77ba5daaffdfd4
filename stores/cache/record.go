package cache

import (
	"encoding/binary"
	"errors"
	"time"
	"unsafe"

	"github.com/tokengate/caddy-oauth2/stores"
)

// A record is the bigcache value of one code, token or family index:
//
//	[0]      record type (recCode, recAccess, recRefresh, recFamily)
//	[1]      flags (flagUsed)
//	[2:10]   issued at, unix milliseconds, little endian
//	[10:18]  expires at, unix milliseconds, little endian
//	[18:]    fields, each a little-endian uint16 length and its bytes
//
// Codes, access and refresh tokens live under their own key (a 64-hex-digit
// HMAC, distinct across kinds because the raw values carry distinct
// prefixes); the type byte keeps the kinds apart, so a hot-path lookup needs
// no prefixed key to be built. A family index lives under "f:"+family, which
// no hex key can equal; its fields are the keys of its member tokens. A
// revoked-family marker lives under "r:"+family, with no fields: its expiry
// is the end of the revocation.
const (
	recCode    byte = 'c'
	recAccess  byte = 'a'
	recRefresh byte = 'r'
	recFamily  byte = 'f'
	recRevoked byte = 'x'

	flagUsed byte = 1

	offFlags   = 1
	offIssued  = 2
	offExpires = 10
	headerLen  = 18

	familyPrefix  = "f:"
	revokedPrefix = "r:"
)

var errFieldTooLong = errors.New("field longer than 65535 bytes")

func recordType(kind stores.Kind) byte {
	if kind == stores.RefreshToken {
		return recRefresh
	}
	return recAccess
}

// header checks that v is a record of type typ and returns its flags and
// expiry.
func header(v []byte, typ byte) (flags byte, expires int64, ok bool) {
	if len(v) < headerLen || v[0] != typ {
		return 0, 0, false
	}
	return v[offFlags], int64(binary.LittleEndian.Uint64(v[offExpires:])), true
}

func expiresAt(v []byte) int64 {
	return int64(binary.LittleEndian.Uint64(v[offExpires:]))
}

func putHeader(b []byte, typ, flags byte, issued, expires time.Time) []byte {
	b = append(b, typ, flags)
	b = binary.LittleEndian.AppendUint64(b, uint64(issued.UnixMilli()))
	return binary.LittleEndian.AppendUint64(b, uint64(expires.UnixMilli()))
}

func putField(b []byte, s string) ([]byte, error) {
	if len(s) > 0xffff {
		return b, errFieldTooLong
	}
	b = binary.LittleEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...), nil
}

func encodeCode(c *stores.Code) ([]byte, error) {
	n := headerLen + 7*2 + len(c.ClientID) + len(c.Subject) + len(c.RedirectURI) + len(c.Scope) +
		len(c.CodeChallenge) + len(c.CodeChallengeMethod) + len(c.Family)
	b := putHeader(make([]byte, 0, n), recCode, 0, c.IssuedAt, c.ExpiresAt)
	var err error
	for _, f := range [...]string{c.ClientID, c.Subject, c.RedirectURI, c.Scope, c.CodeChallenge, c.CodeChallengeMethod, c.Family} {
		if b, err = putField(b, f); err != nil {
			return nil, err
		}
	}
	return b, nil
}

func encodeToken(t *stores.Token) ([]byte, error) {
	n := headerLen + 4*2 + len(t.ClientID) + len(t.Subject) + len(t.Scope) + len(t.Family)
	b := putHeader(make([]byte, 0, n), recordType(t.Kind), 0, t.IssuedAt, t.ExpiresAt)
	var err error
	for _, f := range [...]string{t.ClientID, t.Subject, t.Scope, t.Family} {
		if b, err = putField(b, f); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// fields reads length-prefixed strings from a record. The strings share v's
// memory: v must be a private copy (bigcache's Get returns one) that nobody
// modifies afterwards.
type fields struct {
	s   string
	off int
	bad bool
}

func newFields(v []byte) fields {
	return fields{s: unsafe.String(unsafe.SliceData(v), len(v)), off: headerLen}
}

func (f *fields) next() string {
	if f.bad || f.off+2 > len(f.s) {
		f.bad = true
		return ""
	}
	n := int(f.s[f.off]) | int(f.s[f.off+1])<<8
	start := f.off + 2
	if start+n > len(f.s) {
		f.bad = true
		return ""
	}
	f.off = start + n
	return f.s[start:f.off]
}

func times(v []byte) (issued, expires time.Time) {
	return time.UnixMilli(int64(binary.LittleEndian.Uint64(v[offIssued:]))),
		time.UnixMilli(int64(binary.LittleEndian.Uint64(v[offExpires:])))
}

// decodeCode decodes a record already checked by header.
func decodeCode(v []byte, key string) (*stores.Code, bool) {
	f := newFields(v)
	c := &stores.Code{Key: key}
	c.ClientID = f.next()
	c.Subject = f.next()
	c.RedirectURI = f.next()
	c.Scope = f.next()
	c.CodeChallenge = f.next()
	c.CodeChallengeMethod = f.next()
	c.Family = f.next()
	c.IssuedAt, c.ExpiresAt = times(v)
	return c, !f.bad
}

// decodeToken decodes a record already checked by header.
func decodeToken(v []byte, key string) (*stores.Token, bool) {
	f := newFields(v)
	t := &stores.Token{Key: key, Kind: stores.AccessToken}
	if v[0] == recRefresh {
		t.Kind = stores.RefreshToken
	}
	t.ClientID = f.next()
	t.Subject = f.next()
	t.Scope = f.next()
	t.Family = f.next()
	t.IssuedAt, t.ExpiresAt = times(v)
	return t, !f.bad
}

// members returns the token keys listed in a family index record.
func members(v []byte) []string {
	f := newFields(v)
	var keys []string
	for f.off < len(f.s) {
		k := f.next()
		if f.bad {
			break
		}
		keys = append(keys, k)
	}
	return keys
}

// encodeFamily builds a family index record.
func encodeFamily(expires int64, keys []string) ([]byte, error) {
	n := headerLen
	for _, k := range keys {
		n += 2 + len(k)
	}
	b := make([]byte, 0, n)
	b = append(b, recFamily, 0)
	b = binary.LittleEndian.AppendUint64(b, 0)
	b = binary.LittleEndian.AppendUint64(b, uint64(expires))
	var err error
	for _, k := range keys {
		if b, err = putField(b, k); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// encodeRevoked builds a revoked-family marker record.
func encodeRevoked(expires int64) []byte {
	b := make([]byte, 0, headerLen)
	b = append(b, recRevoked, 0)
	b = binary.LittleEndian.AppendUint64(b, 0)
	return binary.LittleEndian.AppendUint64(b, uint64(expires))
}
