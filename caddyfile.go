package oauth2

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/tokengate/caddy-oauth2/issuer"
)

func init() {
	httpcaddyfile.RegisterGlobalOption("oauth2", parseGlobalOption)
	httpcaddyfile.RegisterHandlerDirective("oauth2_server", parseServer)
	httpcaddyfile.RegisterHandlerDirective("oauth2_guard", parseGuard)
	// No `order` line needed: the guard runs where authentication does, the
	// server where responders do.
	httpcaddyfile.RegisterDirectiveOrder("oauth2_guard", httpcaddyfile.Before, "basic_auth")
	httpcaddyfile.RegisterDirectiveOrder("oauth2_server", httpcaddyfile.Before, "respond")
}

func parseGlobalOption(d *caddyfile.Dispenser, _ any) (any, error) {
	app := new(App)
	if err := app.UnmarshalCaddyfile(d); err != nil {
		return nil, err
	}
	return httpcaddyfile.App{Name: "oauth2", Value: caddyconfig.JSON(app, nil)}, nil
}

// UnmarshalCaddyfile sets up the app from Caddyfile tokens. Syntax:
//
//	oauth2 {
//		issuer                      <url>
//		token_secret                <secret>
//		access_token_store          <driver> [{ ... }]
//		authorization_code_store    <driver> [{ ... }]
//		purge_every                 <duration>
//		purge_batch                 <rows>
//		authorization_code_lifetime <duration>
//		access_token_lifetime       <duration>
//		refresh_token_lifetime      <duration>
//		require_pkce
//		store_timeout               <duration>
//		validation_cache            <duration>
//		revocation_feed             <interval>|off
//		max_body_size               <bytes>
//		scope_description           <scope> <text>
//		consent_template            <file>
//		max_secret_verifications    <n>
//		access_token_format         opaque|jwt
//		audience                    <aud>
//		signing_key                 <pem file>
//		signing_key_rotation        <duration>
//		jwt_revocation_check        <duration>
//		resources                   <uri> [<uri>...]
//		client_id_metadata_documents {
//			scopes      <scope> [<scope>...]
//			allow_hosts <host>|*.<domain> [...]
//			allow_private_addresses
//			root_ca     <pem file>
//		}
//		require_pushed_authorization_requests
//		profile                     fapi2
//		client <client_id> {
//			secret_hash  <bcrypt hash>
//			redirect_uri <uri> [<uri>...]
//			grant_types  <grant> [<grant>...]
//			scopes       <scope> [<scope>...]
//			skip_consent
//			introspect
//			name         <display name>
//			logo_uri     <https url>
//			resources    <uri> [<uri>...]
//			post_logout_redirect_uri <uri> [<uri>...]
//			id_token_signed_response_alg RS256|ES256|EdDSA
//			token_endpoint_auth_method none|client_secret_basic|client_secret_post|private_key_jwt
//			jwks_uri     <https url>
//			jwks         <jwk set file>
//			require_pushed_authorization_requests
//		}
//		registration {
//			open | initial_access_token <token>
//			scopes          <scope> [<scope>...]
//			grant_types     <grant> [<grant>...]
//			client_lifetime <duration>
//			max_clients     <n>
//			rate_limit      <n>
//		}
//		oidc {
//			claim <name> <placeholder> [scope <scope>]
//			id_token_lifetime     <duration>
//			subject_type          public|pairwise
//			auth_time_placeholder <placeholder>
//		}
//	}
//
// scope_description may be given once per scope; signing_key may be
// repeated, the first signs.
func (a *App) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume option name
	if d.NextArg() {
		return d.ArgErr()
	}
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		if opt != "client" && opt != "scope_description" && opt != "signing_key" {
			if seen[opt] {
				return d.Errf("duplicate subdirective %q", opt)
			}
			seen[opt] = true
		}
		var err error
		switch opt {
		case "issuer":
			if err = oneString(d, &a.Issuer); err == nil && !hasPlaceholder(a.Issuer) {
				if verr := issuer.ValidateIssuer(a.Issuer); verr != nil {
					return d.Err(verr.Error())
				}
			}
		case "token_secret":
			if err = oneString(d, &a.TokenSecret); err == nil && !hasPlaceholder(a.TokenSecret) && len(a.TokenSecret) < minTokenSecret {
				return d.Errf("token_secret must be at least %d bytes, got %d; use a placeholder such as {env.OAUTH2_TOKEN_SECRET} or {file./path} to keep it out of the config",
					minTokenSecret, len(a.TokenSecret))
			}
		case "access_token_store":
			a.AccessTokenStoreRaw, err = unmarshalStore(d)
		case "authorization_code_store":
			a.AuthorizationCodeStoreRaw, err = unmarshalStore(d)
		case "purge_every":
			err = oneDuration(d, &a.PurgeEvery)
		case "purge_batch":
			var n int64
			err = oneInt(d, &n)
			a.PurgeBatch = int(n)
		case "authorization_code_lifetime":
			err = oneDurationAtLeast(d, &a.AuthorizationCodeLifetime, time.Second)
		case "access_token_lifetime":
			err = oneDurationAtLeast(d, &a.AccessTokenLifetime, time.Second)
		case "refresh_token_lifetime":
			err = oneDurationAtLeast(d, &a.RefreshTokenLifetime, time.Second)
		case "require_pushed_authorization_requests":
			if d.NextArg() {
				return d.ArgErr()
			}
			a.RequirePushedAuthorizationRequests = true
		case "profile":
			if err = oneString(d, &a.Profile); err == nil && a.Profile != issuer.ProfileFAPI2 {
				return d.Errf("profile: want %s, got %q", issuer.ProfileFAPI2, a.Profile)
			}
		case "require_pkce":
			if d.NextArg() {
				return d.ArgErr()
			}
			a.RequirePKCE = true
		case "store_timeout":
			err = oneDurationAtLeast(d, &a.StoreTimeout, time.Second)
		case "validation_cache":
			err = oneDuration(d, &a.ValidationCache)
		case "revocation_feed":
			var v string
			if err = oneString(d, &v); err != nil {
				break
			}
			if v == "off" {
				a.RevocationFeedOff = true
			} else if dur, perr := caddy.ParseDuration(v); perr != nil || dur <= 0 {
				err = d.Errf("revocation_feed: want a positive interval or off, got %q", v)
			} else {
				a.RevocationFeedInterval = caddy.Duration(dur)
			}
		case "max_body_size":
			err = oneInt(d, &a.MaxBodySize)
		case "scope_description":
			args := d.RemainingArgs()
			if len(args) != 2 {
				return d.Errf("scope_description takes a scope and its description, got %d arguments", len(args))
			}
			if _, dup := a.ScopeDescriptions[args[0]]; dup {
				return d.Errf("scope_description of %q given twice", args[0])
			}
			if a.ScopeDescriptions == nil {
				a.ScopeDescriptions = map[string]string{}
			}
			a.ScopeDescriptions[args[0]] = args[1]
		case "consent_template":
			err = oneString(d, &a.ConsentTemplate)
		case "access_token_format":
			if err = oneString(d, &a.AccessTokenFormat); err == nil && a.AccessTokenFormat != formatOpaque && a.AccessTokenFormat != formatJWT {
				return d.Errf("access_token_format: want opaque or jwt, got %q", a.AccessTokenFormat)
			}
		case "audience":
			err = oneString(d, &a.Audience)
		case "signing_key":
			var file string
			if err = oneString(d, &file); err == nil {
				a.SigningKeys = append(a.SigningKeys, file)
			}
		case "signing_key_rotation":
			err = oneDurationAtLeast(d, &a.SigningKeyRotation, time.Minute)
		case "jwt_revocation_check":
			err = oneDuration(d, &a.JWTRevocationCheck)
		case "max_secret_verifications":
			var n int64
			err = oneInt(d, &n)
			a.MaxSecretVerifications = int(n)
		case "registration":
			a.Registration, err = unmarshalRegistration(d)
		case "resources":
			a.Resources, err = someStrings(d)
		case "client_id_metadata_documents":
			a.ClientIDMetadataDocuments, err = unmarshalMetadataDocuments(d)
		case "oidc":
			a.OIDC, err = unmarshalOIDC(d)
		case "dpop":
			a.DPoP, err = unmarshalDPoP(d)
		case "client":
			var c *Client
			c, err = unmarshalClient(d)
			if err == nil {
				for _, other := range a.Clients {
					if other.ID == c.ID {
						return d.Errf("client %q is defined twice", c.ID)
					}
				}
				a.Clients = append(a.Clients, c)
			}
		default:
			return d.Errf("unrecognized subdirective %q", opt)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func unmarshalStore(d *caddyfile.Dispenser) ([]byte, error) {
	if !d.NextArg() {
		return nil, d.ArgErr()
	}
	driver := d.Val()
	unm, err := caddyfile.UnmarshalModule(d, "oauth2.stores."+driver)
	if err != nil {
		return nil, err
	}
	return caddyconfig.JSONModuleObject(unm, "driver", driver, nil), nil
}

func unmarshalClient(d *caddyfile.Dispenser) (*Client, error) {
	c := new(Client)
	file, line := d.File(), d.Line()
	if !d.NextArg() {
		return nil, d.ArgErr()
	}
	c.ID = d.Val()
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		if seen[opt] {
			return nil, d.Errf("duplicate subdirective %q in client %q", opt, c.ID)
		}
		seen[opt] = true
		var err error
		switch opt {
		case "secret_hash":
			err = oneString(d, &c.SecretHash)
		case "redirect_uri", "redirect_uris":
			c.RedirectURIs, err = someStrings(d)
		case "grant_types":
			if c.GrantTypes, err = someStrings(d); err == nil {
				for _, g := range c.GrantTypes {
					if !slices.Contains(grantTypes, g) {
						return nil, d.Errf("client %q: unsupported grant type %q: want %s", c.ID, g, strings.Join(grantTypes, ", "))
					}
				}
			}
		case "scopes":
			c.Scopes, err = someStrings(d)
		case "skip_consent":
			if d.NextArg() {
				return nil, d.ArgErr()
			}
			c.SkipConsent = true
		case "introspect":
			if d.NextArg() {
				return nil, d.ArgErr()
			}
			c.Introspect = true
		case "name":
			err = oneString(d, &c.Name)
		case "logo_uri":
			err = oneString(d, &c.LogoURI)
		case "resources":
			c.Resources, err = someStrings(d)
		case "post_logout_redirect_uri", "post_logout_redirect_uris":
			c.PostLogoutRedirectURIs, err = someStrings(d)
		case "id_token_signed_response_alg":
			err = oneString(d, &c.IDTokenSignedResponseAlg)
		case "token_endpoint_auth_method":
			err = oneString(d, &c.TokenEndpointAuthMethod)
		case "jwks_uri":
			err = oneString(d, &c.JWKSURI)
		case "jwks":
			err = oneString(d, &c.JWKS)
		case "require_pushed_authorization_requests":
			if d.NextArg() {
				return nil, d.ArgErr()
			}
			c.RequirePushedAuthorizationRequests = true
		case "dpop_bound_access_tokens":
			if d.NextArg() {
				return nil, d.ArgErr()
			}
			c.DPoPBoundAccessTokens = true
		default:
			return nil, d.Errf("unrecognized subdirective %q in client %q", opt, c.ID)
		}
		if err != nil {
			return nil, err
		}
	}
	// The checks the server makes, reported at the client's line: redirect
	// URI rules, scopes, grants against the client type, the secret hash.
	ic, _ := c.issuerClient(func(s string) string {
		if hasPlaceholder(s) {
			return placeholderHash // checked when Caddy provisions
		}
		return s
	}, func(string) ([]byte, error) { return []byte(placeholderJWKS), nil }) // read when Caddy provisions
	if err := issuer.ValidateClient(ic); err != nil {
		return nil, fmt.Errorf("client %q: %v, at %s:%d", c.ID, err, file, line)
	}
	return c, nil
}

// unmarshalRegistration reads the registration block.
func unmarshalRegistration(d *caddyfile.Dispenser) (*Registration, error) {
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	r := new(Registration)
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		if seen[opt] {
			return nil, d.Errf("duplicate subdirective %q in registration", opt)
		}
		seen[opt] = true
		var err error
		var n int64
		switch opt {
		case "open":
			if d.NextArg() {
				return nil, d.ArgErr()
			}
			r.Open = true
		case "initial_access_token":
			err = oneString(d, &r.InitialAccessToken)
			if err == nil && !hasPlaceholder(r.InitialAccessToken) && len(r.InitialAccessToken) < 32 {
				return nil, d.Errf("initial_access_token must be at least 32 bytes; use a placeholder such as {env.OAUTH2_DCR_TOKEN} to keep it out of the config")
			}
		case "scopes":
			r.Scopes, err = someStrings(d)
		case "grant_types":
			if r.GrantTypes, err = someStrings(d); err == nil {
				for _, g := range r.GrantTypes {
					if !slices.Contains(grantTypes, g) {
						return nil, d.Errf("registration: unsupported grant type %q: want %s", g, strings.Join(grantTypes, ", "))
					}
				}
			}
		case "client_lifetime":
			err = oneDurationAtLeast(d, &r.ClientLifetime, time.Second)
		case "max_clients":
			err = oneInt(d, &n)
			r.MaxClients = int(n)
		case "rate_limit":
			err = oneInt(d, &n)
			r.RateLimit = int(n)
		default:
			return nil, d.Errf("unrecognized subdirective %q in registration", opt)
		}
		if err != nil {
			return nil, err
		}
	}
	if r.Open == (r.InitialAccessToken != "") {
		return nil, d.Errf("registration: give exactly one of open and initial_access_token")
	}
	return r, nil
}

// unmarshalMetadataDocuments reads the client_id_metadata_documents block:
//
//	client_id_metadata_documents {
//		scopes <scope>...
//		allow_hosts <host>|*.<domain>...
//		allow_private_addresses   # tests only
//		root_ca <file>            # tests only
//	}
func unmarshalMetadataDocuments(d *caddyfile.Dispenser) (*ClientIDMetadataDocuments, error) {
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	m := new(ClientIDMetadataDocuments)
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		if seen[opt] {
			return nil, d.Errf("duplicate subdirective %q in client_id_metadata_documents", opt)
		}
		seen[opt] = true
		var err error
		switch opt {
		case "scopes":
			m.Scopes, err = someStrings(d)
		case "allow_hosts":
			m.AllowHosts, err = someStrings(d)
		case "allow_private_addresses":
			if d.NextArg() {
				return nil, d.ArgErr()
			}
			m.AllowPrivateAddresses = true
		case "root_ca":
			err = oneString(d, &m.RootCA)
		default:
			return nil, d.Errf("unrecognized subdirective %q in client_id_metadata_documents", opt)
		}
		if err != nil {
			return nil, err
		}
	}
	return m, nil
}

// grantTypes are the grant types a client may list.
var grantTypes = []string{"authorization_code", "refresh_token", "client_credentials"}

// minTokenSecret is the shortest token_secret, in bytes.
const minTokenSecret = 32

// placeholderHash stands in for a secret_hash given as a placeholder while
// the Caddyfile is checked: a valid bcrypt hash of nothing in particular.
// placeholderJWKS stands for a client's jwks file when the Caddyfile is
// checked: the file is read when Caddy provisions.
const placeholderJWKS = `{"keys":[{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}`

const placeholderHash = "$2a$04$vFl3KkwJg1x0WQjG6rOQ5uq6Ixr9D7uYlW2F3oGd0o3uQ9bm1YV1a"

func hasPlaceholder(s string) bool { return strings.Contains(s, "{") }

func parseServer(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	s := new(Server)
	err := s.UnmarshalCaddyfile(h.Dispenser)
	return s, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. It takes no
// options: everything it serves is configured in the global `oauth2` option.
//
//	oauth2_server
func (s *Server) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	if d.NextBlock(d.Nesting()) {
		return d.Errf("oauth2_server takes no block: configure it in the global oauth2 option")
	}
	return nil
}

func parseGuard(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	g := new(Guard)
	err := g.UnmarshalCaddyfile(h.Dispenser)
	return g, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	oauth2_guard [<scope>...] {
//		scopes   <scope> [<scope>...]
//		realm    <realm>
//		audience <aud> [<aud>...]
//		keep_authorization
//		resource      <uri>    # RFC 9728 metadata, audience-bound tokens
//		resource_name <text>
//		dpop required
//		issuer <url> { ... }   # repeatable, see unmarshalExternalIssuer
//	}
func (g *Guard) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume directive name
	g.Scopes = append(g.Scopes, d.RemainingArgs()...)
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		if opt == "issuer" { // one block per issuer
			iss, err := unmarshalExternalIssuer(d)
			if err != nil {
				return err
			}
			g.Issuers = append(g.Issuers, iss)
			continue
		}
		if seen[opt] {
			return d.Errf("duplicate subdirective %q", opt)
		}
		seen[opt] = true
		switch opt {
		case "scopes":
			more, err := someStrings(d)
			if err != nil {
				return err
			}
			g.Scopes = append(g.Scopes, more...)
		case "realm":
			if err := oneString(d, &g.Realm); err != nil {
				return err
			}
		case "audience":
			more, err := someStrings(d)
			if err != nil {
				return err
			}
			g.Audience = more
		case "keep_authorization":
			if d.NextArg() {
				return d.ArgErr()
			}
			g.KeepAuthorization = true
		case "resource":
			if err := oneString(d, &g.Resource); err != nil {
				return err
			}
		case "resource_name":
			if err := oneString(d, &g.ResourceName); err != nil {
				return err
			}
		case "dpop":
			var v string
			if err := oneString(d, &v); err != nil {
				return err
			}
			if v != "required" {
				return d.Errf("dpop: want required, got %q", v)
			}
			g.RequireDPoP = true
		default:
			return d.Errf("unrecognized subdirective %q", opt)
		}
	}
	return nil
}

func oneString(d *caddyfile.Dispenser, dst *string) error {
	if !d.NextArg() {
		return d.ArgErr()
	}
	*dst = d.Val()
	if d.NextArg() {
		return d.ArgErr()
	}
	return nil
}

func someStrings(d *caddyfile.Dispenser) ([]string, error) {
	args := d.RemainingArgs()
	if len(args) == 0 {
		return nil, d.ArgErr()
	}
	return args, nil
}

func oneDuration(d *caddyfile.Dispenser, dst *caddy.Duration) error {
	return oneDurationAtLeast(d, dst, time.Nanosecond)
}

// oneDurationAtLeast reads the option's one duration argument, which must
// be at least least; errors name the option.
func oneDurationAtLeast(d *caddyfile.Dispenser, dst *caddy.Duration, least time.Duration) error {
	opt := d.Val()
	var s string
	if err := oneString(d, &s); err != nil {
		return err
	}
	dur, err := caddy.ParseDuration(s)
	if err != nil {
		return d.Errf("%s: %q is not a duration such as 30s, 10m or 12h", opt, s)
	}
	if dur < least {
		if least == time.Nanosecond {
			return d.Errf("%s: %s must be positive", opt, s)
		}
		return d.Errf("%s: %s must be at least %v", opt, s, least)
	}
	*dst = caddy.Duration(dur)
	return nil
}

func oneInt(d *caddyfile.Dispenser, dst *int64) error {
	opt := d.Val()
	var s string
	if err := oneString(d, &s); err != nil {
		return err
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return d.Errf("%s: %q is not a positive whole number", opt, s)
	}
	*dst = n
	return nil
}

// Interface guards
var (
	_ caddyfile.Unmarshaler = (*App)(nil)
	_ caddyfile.Unmarshaler = (*Server)(nil)
	_ caddyfile.Unmarshaler = (*Guard)(nil)
)
