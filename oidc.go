package oauth2

import (
	"fmt"
	"net/http"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/tokengate/caddy-oauth2/issuer"
	"github.com/tokengate/caddy-oauth2/token"
)

// purposePairwise keys pairwise subjects (OIDC Core §8.1).
const purposePairwise = "oidc-pairwise"

// OIDC turns on OpenID Connect: ID tokens for grants with the openid
// scope, UserInfo at /oauth2/userinfo and the discovery document at
// /.well-known/openid-configuration. The user is Caddy's authenticated
// user ({http.auth.user.id}); the other claims are read from placeholders
// when the user authorizes, and kept with the grant.
type OIDC struct {
	// Claims are the claims released, each read from a placeholder at
	// authorization time. Default: none, only sub.
	Claims []*OIDCClaim `json:"claims,omitempty"`
	// IDTokenLifetime bounds an ID token's life. Default: 1h.
	IDTokenLifetime caddy.Duration `json:"id_token_lifetime,omitempty"`
	// SubjectType is "public" (sub is the user id) or "pairwise" (sub is
	// an HMAC of the client's redirect host and the user id under a key
	// derived from token_secret, OIDC Core §8.1). Default: public.
	SubjectType string `json:"subject_type,omitempty"`
	// AuthTimePlaceholder is a placeholder that the authentication handler
	// in front sets to when the user authenticated (Unix seconds or RFC
	// 3339): it becomes the ID token's auth_time, and lets prompt=login
	// and max_age be honoured. Default: none, auth_time is unknown.
	AuthTimePlaceholder string `json:"auth_time_placeholder,omitempty"`
}

// OIDCClaim is one claim read from a placeholder.
type OIDCClaim struct {
	// Name is the claim's name, such as email or groups.
	Name string `json:"name"`
	// Placeholder is read at authorization time, such as
	// {http.auth.user.email}; an empty value omits the claim, one with
	// commas becomes a list.
	Placeholder string `json:"placeholder"`
	// Scope releases the claim. Default: the standard scope of a standard
	// claim (OIDC Core §5.4: profile, email, address, phone), else the
	// claim's own name.
	Scope string `json:"scope,omitempty"`
}

// unmarshalOIDC reads the oidc block of the oauth2 global option:
//
//	oidc {
//		claim <name> <placeholder> [scope <scope>]
//		id_token_lifetime <duration>
//		subject_type public|pairwise
//		auth_time_placeholder <placeholder>
//	}
//
// A bare oidc turns OpenID Connect on with the defaults.
func unmarshalOIDC(d *caddyfile.Dispenser) (*OIDC, error) {
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	o := new(OIDC)
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		if opt != "claim" {
			if seen[opt] {
				return nil, d.Errf("duplicate subdirective %q in oidc", opt)
			}
			seen[opt] = true
		}
		var err error
		switch opt {
		case "claim":
			args := d.RemainingArgs()
			if len(args) != 2 && (len(args) != 4 || args[2] != "scope") {
				return nil, d.Errf("want claim <name> <placeholder> [scope <scope>], got %d arguments", len(args))
			}
			c := &OIDCClaim{Name: args[0], Placeholder: args[1]}
			if len(args) == 4 {
				c.Scope = args[3]
			}
			for _, other := range o.Claims {
				if other.Name == c.Name {
					return nil, d.Errf("claim %q is given twice", c.Name)
				}
			}
			o.Claims = append(o.Claims, c)
		case "id_token_lifetime":
			err = oneDurationAtLeast(d, &o.IDTokenLifetime, time.Second)
		case "subject_type":
			if err = oneString(d, &o.SubjectType); err == nil &&
				o.SubjectType != issuer.SubjectPublic && o.SubjectType != issuer.SubjectPairwise {
				return nil, d.Errf("subject_type: want public or pairwise, got %q", o.SubjectType)
			}
		case "auth_time_placeholder":
			err = oneString(d, &o.AuthTimePlaceholder)
		default:
			return nil, d.Errf("unrecognized subdirective %q in oidc", opt)
		}
		if err != nil {
			return nil, err
		}
	}
	return o, nil
}

// issuerOIDC is the OpenID Connect configuration as package issuer takes
// it, nil when off: the placeholders become functions reading the
// request's replacer.
func (a *App) issuerOIDC() *issuer.OIDC {
	o := a.OIDC
	if o == nil {
		return nil
	}
	cfg := &issuer.OIDC{
		Ring:            a.ring,
		IDTokenLifetime: time.Duration(o.IDTokenLifetime),
		SubjectType:     o.SubjectType,
		PairwiseKey:     a.pairwiseKey,
	}
	for _, c := range o.Claims {
		cfg.Claims = append(cfg.Claims, issuer.Claim{Name: c.Name, Scope: c.Scope, Value: placeholderValue(c.Placeholder)})
	}
	if p := o.AuthTimePlaceholder; p != "" {
		value := placeholderValue(p)
		cfg.AuthTime = func(r *http.Request) time.Time {
			t, _ := issuer.ParseAuthTime(value(r))
			return t
		}
	}
	return cfg
}

// placeholderValue returns a function reading a placeholder (or a text
// with placeholders) with the request's replacer; unknown ones are empty.
func placeholderValue(p string) func(*http.Request) string {
	return func(r *http.Request) string {
		repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
		if !ok {
			return ""
		}
		return repl.ReplaceAll(p, "")
	}
}

// provisionOIDC checks the oidc block and derives its key.
func (a *App) provisionOIDC(secret []byte) error {
	o := a.OIDC
	if o == nil {
		return nil
	}
	switch o.SubjectType {
	case "", issuer.SubjectPublic:
	case issuer.SubjectPairwise:
		a.pairwiseKey = token.DeriveKey(secret, purposePairwise)
	default:
		return fmt.Errorf("oidc: subject_type: want public or pairwise, got %q", o.SubjectType)
	}
	for _, c := range o.Claims {
		if c.Name == "" || c.Placeholder == "" {
			return fmt.Errorf("oidc: a claim needs a name and a placeholder")
		}
	}
	return nil
}
