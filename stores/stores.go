// Package stores defines where authorization codes and tokens are kept.
//
// A store never sees a raw code or token: every key handed to it is the
// HMAC-SHA256 of the raw value (see package token), hex encoded. A store
// module (one package per backend below this one) implements Store, which is
// both a CodeStore and a TokenStore, so one configured backend can hold
// either or both.
//
// Expired records behave as absent: lookups and consumes report ErrNotFound
// for them even before PurgeExpired has removed them.
package stores

import (
	"context"
	"errors"
	"time"
)

// ErrNotFound reports a code or token that does not exist, has expired, or
// has been revoked.
var ErrNotFound = errors.New("not found")

// ErrConsumed reports a single-use code or refresh token presented again.
// The call that returns it also returns the record, so the caller can revoke
// the grant family it belongs to (RFC 6749 §4.1.2, §10.4).
var ErrConsumed = errors.New("already used")

// ErrRevoked reports tokens inserted into a grant family that has been
// revoked: they are dead on arrival and nothing of them is stored live. This
// is what makes a replay that races the winning redemption exact: whichever
// of RevokeFamily and InsertTokens comes second, the tokens never validate.
var ErrRevoked = errors.New("grant family revoked")

// ErrUnavailable wraps a failure of the backend itself (unreachable, timed
// out, misconfigured). Callers answer 503 and never treat it as a pass.
var ErrUnavailable = errors.New("store unavailable")

// Unavailable wraps err so that errors.Is(err, ErrUnavailable) holds.
// Stores use it for every backend failure that is not ErrNotFound or
// ErrConsumed; nil stays nil.
func Unavailable(err error) error {
	if err == nil || errors.Is(err, ErrUnavailable) {
		return err
	}
	return &unavailableError{err}
}

type unavailableError struct{ err error }

func (e *unavailableError) Error() string { return "store unavailable: " + e.err.Error() }
func (e *unavailableError) Unwrap() []error {
	return []error{ErrUnavailable, e.err}
}

// Kind tells access tokens from refresh tokens.
type Kind uint8

// The token kinds.
const (
	AccessToken Kind = iota + 1
	RefreshToken
)

// String returns the RFC 7009 token_type_hint name of the kind.
func (k Kind) String() string {
	switch k {
	case AccessToken:
		return "access_token"
	case RefreshToken:
		return "refresh_token"
	}
	return "unknown"
}

// Code is an issued authorization code.
type Code struct {
	// Key is the hex HMAC-SHA256 of the raw code.
	Key string
	// ClientID is the client the code was issued to.
	ClientID string
	// Subject is the resource owner who approved the request.
	Subject string
	// RedirectURI is the redirect_uri of the authorization request; empty
	// when the request named none and the client's only URI was used.
	RedirectURI string
	// Scope is the granted scope, space separated.
	Scope string
	// CodeChallenge and CodeChallengeMethod bind the code to a PKCE verifier
	// (RFC 7636); both empty when the request used no PKCE.
	CodeChallenge       string
	CodeChallengeMethod string
	// Family identifies the grant: every token issued from this code, and
	// from refreshing those, carries it.
	Family string
	// Audience holds the resource indicators (RFC 8707) the authorization
	// request named, which the token request may narrow but not widen;
	// nil for none. Each is an absolute URI without spaces.
	Audience []string
	// JKT is the RFC 7638 thumbprint (base64url SHA-256) of the DPoP key the
	// authorization request bound the code to with dpop_jkt (RFC 9449 §10);
	// empty for none. The token request must prove that key.
	JKT string
	// OIDC holds what OpenID Connect needs to mint ID tokens for the grant
	// (the nonce, auth_time and released claims read at authorization);
	// nil when the grant is not an OpenID Connect one.
	OIDC *OIDCGrant
	// IssuedAt and ExpiresAt bound the code's life.
	IssuedAt  time.Time
	ExpiresAt time.Time
}

// Token is an issued access or refresh token.
type Token struct {
	// Key is the hex HMAC-SHA256 of the raw token.
	Key  string
	Kind Kind
	// ClientID is the client the token was issued to.
	ClientID string
	// Subject is the resource owner; empty for client_credentials grants.
	Subject string
	// Scope is the granted scope, space separated.
	Scope string
	// Family identifies the grant the token belongs to. Empty for tokens
	// that belong to no family (client_credentials), which RevokeFamily
	// never reaches.
	Family string
	// Audience holds the resource indicators (RFC 8707) the token is for:
	// a guard with an audience admits it only when one of them matches,
	// introspection returns them as "aud", and a refresh may narrow them
	// but not widen them. Nil for a token with no audience restriction.
	// Each is an absolute URI without spaces.
	Audience []string
	// JKT is the RFC 7638 thumbprint (base64url SHA-256) of the DPoP key the
	// token is bound to (RFC 9449 §6): the guard admits it only with a
	// proof of that key, never as a bearer token. Empty for a bearer token.
	JKT string
	// OIDC holds what a refresh needs to mint the same ID token again (the
	// subject's auth_time, the session and the released claims; never the
	// nonce, OpenID Connect Core §12.2), and what the guard and UserInfo
	// release as claims. Nil when the grant is not an OpenID Connect one.
	OIDC *OIDCGrant
	// IssuedAt and ExpiresAt bound the token's life.
	IssuedAt  time.Time
	ExpiresAt time.Time
}

// OIDCGrant is the OpenID Connect state of a grant. Stores keep it as one
// JSON value (its json tags are the stored form) and return it unchanged.
type OIDCGrant struct {
	// Nonce is the authorization request's nonce, echoed in the ID token
	// of the code redemption only; empty on tokens.
	Nonce string `json:"nonce,omitempty"`
	// AuthTime is when the resource owner authenticated, as the
	// authentication handler said; zero when unknown.
	AuthTime time.Time `json:"auth_time,omitzero"`
	// SessionID is the ID token's sid: one per authorization.
	SessionID string `json:"sid,omitempty"`
	// Claims are the claims the granted scopes release, by claim name:
	// strings or lists of strings.
	Claims map[string]any `json:"claims,omitempty"`
}

// CodeStore keeps authorization codes.
type CodeStore interface {
	// InsertCode stores a new code.
	InsertCode(ctx context.Context, c *Code) error
	// ConsumeCode marks the code used and returns it. Under concurrency
	// exactly one caller wins; every later call returns the code with
	// ErrConsumed. An absent or expired code gives ErrNotFound.
	ConsumeCode(ctx context.Context, key string) (*Code, error)
	// PurgeExpiredCodes deletes expired codes, at most batch rows per
	// statement, until none remain, and returns how many it deleted.
	PurgeExpiredCodes(ctx context.Context, batch int) (int64, error)
}

// TokenStore keeps access and refresh tokens.
type TokenStore interface {
	// InsertTokens stores newly issued tokens (typically an access token and
	// its refresh token) together. Tokens of a family revoked by RevokeFamily
	// (whose marker has not expired) are dead on arrival: the call returns
	// ErrRevoked and none of them ever validates, even when the insert races
	// the revocation.
	InsertTokens(ctx context.Context, tokens ...*Token) error
	// LookupToken returns a live token of the given kind. An absent,
	// expired, revoked or consumed token gives ErrNotFound. This is the
	// guard's hot path.
	LookupToken(ctx context.Context, kind Kind, key string) (*Token, error)
	// ConsumeRefreshToken marks a refresh token used (rotated) and returns
	// it. Exactly one concurrent caller wins; every later call returns the
	// token with ErrConsumed. Absent or expired gives ErrNotFound.
	ConsumeRefreshToken(ctx context.Context, key string) (*Token, error)
	// RevokeToken removes one token. Revoking an unknown token is not an
	// error (RFC 7009 §2.2).
	RevokeToken(ctx context.Context, kind Kind, key string) error
	// RevokeFamily removes every access and refresh token of a grant family,
	// including consumed refresh tokens, and records the family as revoked
	// until the given time, which the caller sets past the end of life of
	// any token that could still be issued into the family. While the
	// marker lives, InsertTokens into the family returns ErrRevoked. The
	// marker is security state: a store never drops it to make room. The
	// empty family names none.
	RevokeFamily(ctx context.Context, family string, until time.Time) error
	// PurgeExpiredTokens deletes expired access and refresh tokens, at most
	// batch rows per statement, until none remain, and returns how many it
	// deleted.
	PurgeExpiredTokens(ctx context.Context, batch int) (int64, error)
}

// Store is what every store backend provides.
type Store interface {
	CodeStore
	TokenStore
}

// Starter is implemented by stores that must reach their backend once before
// serving: checking or creating a schema, warning about settings. The app
// calls Start when it starts, not at provisioning, because `caddy validate`
// provisions too and must not need the database.
type Starter interface {
	Start(ctx context.Context) error
}

// SubjectRevoker is implemented by stores that can revoke everything of a
// resource owner or a client at once, for the admin API ("log alice out
// everywhere"). The built-in stores all do; the app reports a store that
// does not when the admin revoke is asked of it.
type SubjectRevoker interface {
	// RevokeSubject deletes every code, access token and refresh token
	// whose subject is subject (when not empty) and whose client is
	// clientID (when not empty); one of them is required. A token without
	// a subject (client_credentials) has its client as subject, as the
	// guard shows it: see RevokedBySubject, which says what matches. It also marks
	// the grant families of the deleted codes and refresh tokens revoked
	// until the given time, as RevokeFamily does, so a redemption or
	// refresh in flight cannot bring a token back. It returns how many
	// codes and tokens it deleted.
	RevokeSubject(ctx context.Context, subject, clientID string, until time.Time) (int64, error)
}

// RevokedBySubject reports whether a code or token of subject tokSubject
// and client tokClient is one RevokeSubject(subject, clientID) removes.
// Every store and every cache in front of one decide by it. A token with
// no subject, issued by client_credentials, has the client itself as
// subject (RFC 9068 §2.2; the guard sets {http.auth.user.id} to the
// client_id), so revoking that subject revokes it.
func RevokedBySubject(tokSubject, tokClient, subject, clientID string) bool {
	if tokSubject == "" {
		tokSubject = tokClient
	}
	return (subject == "" || tokSubject == subject) && (clientID == "" || tokClient == clientID)
}

// SingleUse is implemented by stores that keep single-use values shared by
// every gateway: pushed authorization requests (RFC 9126 request_uri) and
// the jti of client assertions (RFC 7523 §3), so a value redeemed or seen
// at one gateway is refused at every other. The app uses the code store's.
// Keys are hashes or random identifiers, never raw secrets; values are
// opaque bytes (at most 16 KiB). A used or live value is security state:
// a store never drops it to make room, it refuses the new one instead
// (ErrUnavailable).
type SingleUse interface {
	// PutOnce stores value under key until expiresAt. A key already
	// stored and not expired (used or not) gives ErrExists and changes
	// nothing: this is how a replayed assertion jti is detected.
	PutOnce(ctx context.Context, key string, value []byte, expiresAt time.Time) error
	// TakeOnce marks the value used and returns it. Under concurrency
	// exactly one caller wins; every later call gives ErrConsumed. An
	// absent or expired key gives ErrNotFound.
	TakeOnce(ctx context.Context, key string) ([]byte, error)
	// PurgeExpiredOnce deletes expired values, at most batch rows per
	// statement, and returns how many it deleted.
	PurgeExpiredOnce(ctx context.Context, batch int) (int64, error)
}

// ErrUnsupported reports an optional capability a store does not have.
var ErrUnsupported = errors.New("not supported by this store")

// InProcess is implemented by stores that answer from process memory,
// without I/O. The guard skips the per-lookup deadline for them, which is
// most of its own cost on the hot path.
type InProcess interface {
	InProcess()
}
