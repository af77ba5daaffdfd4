package cache

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/tokengate/caddy-oauth2/stores"
)

// A record is the bigcache value of one code, token or family index, in a
// fixed binary layout kept small because a million tokens may be live:
//
//	[0]      record type (recCode, recAccess, recRefresh, recFamily, recRevoked)
//	[1]      flags (flagUsed, flagWide)
//	[2:8]    expires at, unix milliseconds, 48 bits little endian
//	[8:12]   lifetime (expires − issued), milliseconds, little endian
//	[12:]    fields
//
// A record whose times do not fit (a lifetime over 49 days, a time before
// 1970) has flagWide and two full int64 times instead:
//
//	[2:10]   issued at, unix milliseconds, little endian
//	[10:18]  expires at
//	[18:]    fields
//
// Each field is a uvarint h and, when h is even, h/2 bytes of the string;
// an odd h stands for the string interned at index h/2 (see interned), for
// the client ids, scopes and redirect URIs that many records repeat.
//
// A code or token with an audience (RFC 8707) has one more field at the
// end, its resource URIs joined by spaces; one without has none, so the
// guard's common case reads nothing more. One bound to a DPoP key (RFC
// 9449) or holding OpenID Connect state has flagExt and always three more
// fields: the audience (empty for none), the key thumbprint and the
// stores.OIDCGrant as JSON (each empty for none).
//
// Codes, access and refresh tokens live under their store key (see
// internalKey); the type byte keeps the kinds apart. A family index lives
// under "f:"+family; its fields are the internal keys of its member tokens.
// A revoked-family marker lives under "r:"+family, with no fields: its
// expiry is the end of the revocation. A single-use value (stores.SingleUse)
// lives under "o:"+key, its one field the value, flagUsed once taken.
const (
	recCode    byte = 'c'
	recAccess  byte = 'a'
	recRefresh byte = 'r'
	recFamily  byte = 'f'
	recRevoked byte = 'x'
	recOnce    byte = 'o'

	flagUsed byte = 1
	flagWide byte = 2
	flagExt  byte = 4

	offFlags  = 1
	headerLen = 12 // the narrow header; wideLen with flagWide
	wideLen   = 18

	maxNarrowMilli = 1<<48 - 1

	familyPrefix  = "f:"
	revokedPrefix = "r:"
	oncePrefix    = "o:"
)

var (
	errFieldTooLong = errors.New("field longer than 65535 bytes")
	errBadAudience  = errors.New("an audience entry is empty or holds a space")
)

// putAudience appends the optional audience field.
func putAudience(b []byte, aud []string, tab *interned) ([]byte, error) {
	if len(aud) == 0 {
		return b, nil
	}
	for _, a := range aud {
		if a == "" || strings.IndexByte(a, ' ') >= 0 {
			return nil, errBadAudience
		}
	}
	return putField(b, strings.Join(aud, " "), tab)
}

// audience reads the optional audience field, the last one.
func (f *fields) audience() []string {
	if f.bad || f.off >= len(f.s) {
		return nil
	}
	return strings.Split(f.next(), " ")
}

// putExt appends the audience, the DPoP key thumbprint and the OpenID
// Connect state of a record with flagExt.
func putExt(b []byte, aud []string, jkt string, oidc *stores.OIDCGrant, tab *interned) ([]byte, error) {
	for _, a := range aud {
		if a == "" || strings.IndexByte(a, ' ') >= 0 {
			return nil, errBadAudience
		}
	}
	var js []byte
	if oidc != nil {
		var err error
		if js, err = json.Marshal(oidc); err != nil {
			return nil, err
		}
	}
	var err error
	if b, err = putField(b, strings.Join(aud, " "), tab); err != nil {
		return nil, err
	}
	if b, err = putField(b, jkt, nil); err != nil {
		return nil, err
	}
	return putField(b, unsafe.String(unsafe.SliceData(js), len(js)), nil)
}

// ext reads what putExt wrote.
func (f *fields) ext() (aud []string, jkt string, oidc *stores.OIDCGrant) {
	if a := f.next(); a != "" {
		aud = strings.Split(a, " ")
	}
	jkt = f.next()
	if js := f.next(); js != "" && !f.bad {
		oidc = new(stores.OIDCGrant)
		if json.Unmarshal([]byte(js), oidc) != nil {
			f.bad = true
		}
	}
	return aud, jkt, oidc
}

// internalKey is the bigcache key of a store key. The store keys the issuer
// makes are 64 lowercase hex digits (an HMAC-SHA256); their first 16 bytes,
// behind a zero byte no other key may start with, make a 17-byte key
// instead of 64. A 128-bit truncation of an HMAC is as unforgeable as the
// whole without the secret, and a collision among a billion live tokens
// has odds under 10⁻²¹. Other keys (tests, other callers) stay as they are.
func internalKey(key string) string {
	var b [internalKeyLen]byte
	if !compactKey(&b, key) {
		return key
	}
	return string(b[:])
}

const internalKeyLen = 17

func compactKey(b *[internalKeyLen]byte, key string) bool {
	if len(key) != 64 {
		return false
	}
	// One pass over the pairs of digits: the first 16 decoded, all checked.
	var bad byte
	for i := range 32 {
		hi, lo := unhex[key[2*i]], unhex[key[2*i+1]]
		bad |= hi | lo
		if i < internalKeyLen-1 {
			b[i+1] = hi<<4 | lo
		}
	}
	b[0] = 0
	return bad&0xf0 == 0
}

// unhex maps a lowercase hex digit to its value and anything else to 0xff.
var unhex = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xff
	}
	for c := byte('0'); c <= '9'; c++ {
		t[c] = c - '0'
	}
	for c := byte('a'); c <= 'f'; c++ {
		t[c] = c - 'a' + 10
	}
	return t
}()

// keyBufs lend LookupToken a buffer for the internal key: bigcache neither
// keeps the key of a Get nor lets it stay on the stack.
var keyBufs = sync.Pool{New: func() any { return new([internalKeyLen]byte) }}

func recordType(kind stores.Kind) byte {
	if kind == stores.RefreshToken {
		return recRefresh
	}
	return recAccess
}

// hdrLen is the length of v's header.
func hdrLen(v []byte) int {
	if v[offFlags]&flagWide != 0 {
		return wideLen
	}
	return headerLen
}

// header checks that v is a record of type typ and returns its flags and
// expiry.
func header(v []byte, typ byte) (flags byte, expires int64, ok bool) {
	if len(v) < headerLen || v[0] != typ || len(v) < hdrLen(v) {
		return 0, 0, false
	}
	return v[offFlags], expiresAt(v), true
}

// expiresAt reads the expiry of a record at least headerLen long; a
// truncated wide one reads as long expired.
func expiresAt(v []byte) int64 {
	if v[offFlags]&flagWide == 0 {
		_ = v[7]
		return int64(v[2]) | int64(v[3])<<8 | int64(v[4])<<16 | int64(v[5])<<24 | int64(v[6])<<32 | int64(v[7])<<40
	}
	if len(v) < wideLen {
		return math.MinInt64
	}
	return int64(binary.LittleEndian.Uint64(v[10:]))
}

func times(v []byte) (issued, expires time.Time) {
	if v[offFlags]&flagWide != 0 {
		return time.UnixMilli(int64(binary.LittleEndian.Uint64(v[2:]))),
			time.UnixMilli(int64(binary.LittleEndian.Uint64(v[10:])))
	}
	exp := expiresAt(v)
	return time.UnixMilli(exp - int64(binary.LittleEndian.Uint32(v[8:]))), time.UnixMilli(exp)
}

func putHeader(b []byte, typ, flags byte, issued, expires int64) []byte {
	if life := expires - issued; expires < 0 || expires > maxNarrowMilli || life < 0 || life > math.MaxUint32 {
		b = append(b, typ, flags|flagWide)
		b = binary.LittleEndian.AppendUint64(b, uint64(issued))
		return binary.LittleEndian.AppendUint64(b, uint64(expires))
	}
	b = append(b, typ, flags,
		byte(expires), byte(expires>>8), byte(expires>>16), byte(expires>>24), byte(expires>>32), byte(expires>>40))
	return binary.LittleEndian.AppendUint32(b, uint32(expires-issued))
}

// putField appends s inline, or its index when tab interns it.
func putField(b []byte, s string, tab *interned) ([]byte, error) {
	if tab != nil {
		if i := tab.id(s); i != 0 {
			return binary.AppendUvarint(b, uint64(i)<<1|1), nil
		}
	}
	if len(s) > 0xffff {
		return b, errFieldTooLong
	}
	b = binary.AppendUvarint(b, uint64(len(s))<<1)
	return append(b, s...), nil
}

func encodeCode(c *stores.Code, tab *interned) ([]byte, error) {
	n := wideLen + 7*3 + len(c.Subject) + len(c.CodeChallenge) + len(c.Family)
	var flags byte
	if c.JKT != "" || c.OIDC != nil {
		flags = flagExt
	}
	b := putHeader(make([]byte, 0, n), recCode, flags, c.IssuedAt.UnixMilli(), c.ExpiresAt.UnixMilli())
	var err error
	for _, f := range [...]struct {
		s   string
		tab *interned
	}{{c.ClientID, tab}, {c.Subject, nil}, {c.RedirectURI, tab}, {c.Scope, tab},
		{c.CodeChallenge, nil}, {c.CodeChallengeMethod, tab}, {c.Family, nil}} {
		if b, err = putField(b, f.s, f.tab); err != nil {
			return nil, err
		}
	}
	if flags&flagExt != 0 {
		return putExt(b, c.Audience, c.JKT, c.OIDC, tab)
	}
	return putAudience(b, c.Audience, tab)
}

func encodeToken(t *stores.Token, tab *interned) ([]byte, error) {
	n := wideLen + 4*3 + len(t.Subject) + len(t.Family)
	var flags byte
	if t.JKT != "" || t.OIDC != nil {
		flags = flagExt
	}
	b := putHeader(make([]byte, 0, n), recordType(t.Kind), flags, t.IssuedAt.UnixMilli(), t.ExpiresAt.UnixMilli())
	var err error
	for _, f := range [...]struct {
		s   string
		tab *interned
	}{{t.ClientID, tab}, {t.Subject, nil}, {t.Scope, tab}, {t.Family, nil}} {
		if b, err = putField(b, f.s, f.tab); err != nil {
			return nil, err
		}
	}
	if flags&flagExt != 0 {
		return putExt(b, t.Audience, t.JKT, t.OIDC, tab)
	}
	return putAudience(b, t.Audience, tab)
}

// fields reads the fields of a record. Inline strings share v's memory: v
// must be a private copy (bigcache's Get returns one) that nobody modifies
// afterwards.
type fields struct {
	s   string
	off int
	bad bool
	tab *interned
}

func newFields(v []byte, tab *interned) fields {
	return fields{s: unsafe.String(unsafe.SliceData(v), len(v)), off: hdrLen(v), tab: tab}
}

func (f *fields) next() string {
	if f.bad || f.off >= len(f.s) {
		f.bad = true
		return ""
	}
	h, n := binary.Uvarint(unsafe.Slice(unsafe.StringData(f.s[f.off:]), len(f.s)-f.off))
	if n <= 0 || h > 0xffff<<1|1 {
		f.bad = true
		return ""
	}
	f.off += n
	if h&1 != 0 {
		s, ok := f.tab.str(uint32(h >> 1))
		f.bad = !ok
		return s
	}
	end := f.off + int(h>>1)
	if end > len(f.s) {
		f.bad = true
		return ""
	}
	s := f.s[f.off:end]
	f.off = end
	return s
}

// decodeCode decodes a record already checked by header.
func decodeCode(v []byte, key string, tab *interned) (*stores.Code, bool) {
	f := newFields(v, tab)
	c := &stores.Code{Key: key}
	c.ClientID = f.next()
	c.Subject = f.next()
	c.RedirectURI = f.next()
	c.Scope = f.next()
	c.CodeChallenge = f.next()
	c.CodeChallengeMethod = f.next()
	c.Family = f.next()
	if v[offFlags]&flagExt != 0 {
		c.Audience, c.JKT, c.OIDC = f.ext()
	} else {
		c.Audience = f.audience()
	}
	c.IssuedAt, c.ExpiresAt = times(v)
	return c, !f.bad
}

// decodeToken decodes a record already checked by header.
func decodeToken(v []byte, key string, tab *interned) (*stores.Token, bool) {
	f := newFields(v, tab)
	t := &stores.Token{Key: key, Kind: stores.AccessToken}
	if v[0] == recRefresh {
		t.Kind = stores.RefreshToken
	}
	t.ClientID = f.next()
	t.Subject = f.next()
	t.Scope = f.next()
	t.Family = f.next()
	if v[offFlags]&flagExt != 0 {
		t.Audience, t.JKT, t.OIDC = f.ext()
	} else {
		t.Audience = f.audience()
	}
	t.IssuedAt, t.ExpiresAt = times(v)
	return t, !f.bad
}

// members returns the internal token keys listed in a family index record.
func members(v []byte) []string {
	if len(v) < headerLen || len(v) < hdrLen(v) {
		return nil
	}
	f := newFields(v, nil)
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
	n := wideLen
	for _, k := range keys {
		n += 3 + len(k)
	}
	b := putHeader(make([]byte, 0, n), recFamily, 0, expires, expires)
	var err error
	for _, k := range keys {
		if b, err = putField(b, k, nil); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// encodeOnce builds a single-use value record.
func encodeOnce(value []byte, issued, expires int64) ([]byte, error) {
	b := putHeader(make([]byte, 0, wideLen+3+len(value)), recOnce, 0, issued, expires)
	return putField(b, unsafe.String(unsafe.SliceData(value), len(value)), nil)
}

// onceValue returns a copy of the value of a record checked by header.
func onceValue(v []byte) ([]byte, bool) {
	f := newFields(v, nil)
	s := f.next()
	return []byte(s), !f.bad
}

// encodeRevoked builds a revoked-family marker record.
func encodeRevoked(expires int64) []byte {
	return putHeader(make([]byte, 0, wideLen), recRevoked, 0, expires, expires)
}

// interned is a bounded table of the strings many records repeat: client
// ids, scopes, redirect URIs and PKCE methods come from the configuration
// and are few. A record holds a small index instead of the string, and
// decoding hands out the table's own string, without allocating. Once the
// table is full, or for a long string, records hold the string inline.
// Entries are never removed: an index stays valid for the engine's life.
type interned struct {
	mu    sync.RWMutex
	index map[string]uint32 // under mu
	n     atomic.Uint32     // entries published in strs
	strs  [internMax]string
}

const (
	internMax    = 1024
	internMaxLen = 256
)

// id returns s's 1-based index, interning it if there is room; 0 means
// inline.
func (t *interned) id(s string) uint32 {
	if s == "" || len(s) > internMaxLen {
		return 0
	}
	t.mu.RLock()
	i := t.index[s]
	t.mu.RUnlock()
	if i != 0 {
		return i
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if i = t.index[s]; i != 0 {
		return i
	}
	n := t.n.Load()
	if n == internMax {
		return 0
	}
	if t.index == nil {
		t.index = make(map[string]uint32)
	}
	s = strings.Clone(s) // not a substring of a larger record or request
	t.strs[n] = s
	t.index[s] = n + 1
	t.n.Store(n + 1) // publishes strs[n]
	return n + 1
}

// str returns the string at the 1-based index i.
func (t *interned) str(i uint32) (string, bool) {
	if t == nil || i == 0 || i > t.n.Load() {
		return "", false
	}
	return t.strs[i-1], true
}
