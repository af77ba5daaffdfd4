package oauth2

import (
	"net/http"
	"testing"

	"github.com/caddyserver/caddy/v2"

	"github.com/tokengate/caddy-oauth2/stores"
	"github.com/tokengate/caddy-oauth2/validator"
)

// The guard's placeholders as a handler after it reads them, through a
// replacer where an earlier handler set {http.auth.user.id}.
func TestGrantPlaceholders(t *testing.T) {
	for _, c := range []struct {
		name  string
		grant validator.Grant
		want  map[string]string
	}{
		{"client_credentials", validator.Grant{Token: &stores.Token{ClientID: "svc", Scope: "read"}}, map[string]string{
			"http.auth.user.id": "svc", "oauth2.client_id": "svc", "oauth2.scope": "read", "oauth2.subject": "",
			"oauth2.claims.sub": "", "oauth2.issuer": "https://us.example",
		}},
		{"another issuer's user", validator.Grant{
			Token: &stores.Token{ClientID: "app", Subject: "alice"}, Claims: map[string]any{"iss": "https://idp.example"},
			Issuer: &validator.ForeignIssuer{ID: "https://idp.example", SubjectPrefix: "idp:"},
		}, map[string]string{
			"http.auth.user.id": "idp:alice", "oauth2.subject": "alice", "oauth2.issuer": "https://idp.example",
		}},
		{"another issuer's client", validator.Grant{
			Token: &stores.Token{ClientID: "svc"}, Issuer: &validator.ForeignIssuer{ID: "https://idp.example", SubjectPrefix: "idp:"},
		}, map[string]string{"http.auth.user.id": "idp:svc", "oauth2.client_id": "svc"}},
		{"with claims", validator.Grant{
			Token:  &stores.Token{ClientID: "app", Subject: "alice", Scope: "read write"},
			Claims: map[string]any{"sub": "alice", "tenant": "t1"},
		}, map[string]string{
			"http.auth.user.id": "alice", "oauth2.client_id": "app", "oauth2.scope": "read write", "oauth2.subject": "alice",
			"oauth2.claims.tenant": "t1", "oauth2.claims.missing": "", "oauth2.issuer": "https://us.example",
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			repl := caddy.NewReplacer()
			repl.Set("http.auth.user.id", "from-basic-auth")
			repl.Delete("http.auth.user.id") // as Guard.ServeHTTP does
			repl.Map(grantPlaceholders(c.grant, func(*http.Request) string { return "https://us.example" }, nil))
			for k, want := range c.want {
				if got := repl.ReplaceAll("{"+k+"}", ""); got != want {
					t.Errorf("{%s} = %q, want %q", k, got, want)
				}
			}
		})
	}
}
