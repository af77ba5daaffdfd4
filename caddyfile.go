package oauth2

import (
	"strconv"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
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
//		client <client_id> {
//			secret_hash  <bcrypt hash>
//			redirect_uri <uri> [<uri>...]
//			grant_types  <grant> [<grant>...]
//			scopes       <scope> [<scope>...]
//			skip_consent
//		}
//	}
func (a *App) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume option name
	if d.NextArg() {
		return d.ArgErr()
	}
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		if opt != "client" {
			if seen[opt] {
				return d.Errf("duplicate subdirective %q", opt)
			}
			seen[opt] = true
		}
		var err error
		switch opt {
		case "issuer":
			err = oneString(d, &a.Issuer)
		case "token_secret":
			err = oneString(d, &a.TokenSecret)
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
			err = oneDuration(d, &a.AuthorizationCodeLifetime)
		case "access_token_lifetime":
			err = oneDuration(d, &a.AccessTokenLifetime)
		case "refresh_token_lifetime":
			err = oneDuration(d, &a.RefreshTokenLifetime)
		case "require_pkce":
			if d.NextArg() {
				return d.ArgErr()
			}
			a.RequirePKCE = true
		case "store_timeout":
			err = oneDuration(d, &a.StoreTimeout)
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
			c.GrantTypes, err = someStrings(d)
		case "scopes":
			c.Scopes, err = someStrings(d)
		case "skip_consent":
			if d.NextArg() {
				return nil, d.ArgErr()
			}
			c.SkipConsent = true
		default:
			return nil, d.Errf("unrecognized subdirective %q in client %q", opt, c.ID)
		}
		if err != nil {
			return nil, err
		}
	}
	return c, nil
}

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
//		scopes <scope> [<scope>...]
//		realm  <realm>
//		keep_authorization
//	}
func (g *Guard) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume directive name
	g.Scopes = append(g.Scopes, d.RemainingArgs()...)
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
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
		case "keep_authorization":
			if d.NextArg() {
				return d.ArgErr()
			}
			g.KeepAuthorization = true
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
	var s string
	if err := oneString(d, &s); err != nil {
		return err
	}
	dur, err := caddy.ParseDuration(s)
	if err != nil {
		return d.Errf("parsing %s: %v", d.Val(), err)
	}
	if dur <= 0 {
		return d.Errf("%s must be positive", s)
	}
	*dst = caddy.Duration(dur)
	return nil
}

func oneInt(d *caddyfile.Dispenser, dst *int64) error {
	var s string
	if err := oneString(d, &s); err != nil {
		return err
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return d.Errf("%q is not a positive whole number", s)
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
