package oauth2

import (
	"encoding/json"
	"testing"
	"unicode/utf8"

	"github.com/tokengate/caddy-oauth2/stores/storetest"
)

// FuzzUnmarshalApp feeds arbitrary Caddyfile text to the oauth2 global
// option, store blocks included. It never panics, and an accepted config
// re-marshals to JSON that reads back unchanged, with stores as module
// objects naming their driver.
func FuzzUnmarshalApp(f *testing.F) {
	for _, s := range []string{
		"oauth2",
		"oauth2 x",
		"oauth2 {\n}",
		`oauth2 {
			issuer https://auth.example.com
			token_secret {env.SECRET}
			access_token_store cache {
				name tokens
				max_memory 64
				shards 16
			}
			authorization_code_store sql {
				dialect postgres
				dsn "postgres://u:p@127.0.0.1/db"
				table_prefix oauth2_
				max_open_conns 5
				conn_max_lifetime 5m
				create_schema
			}
			purge_every 30s
			purge_batch 500
			authorization_code_lifetime 5m
			access_token_lifetime 1h
			refresh_token_lifetime 12h
			require_pkce
			store_timeout 1500ms
			validation_cache 5s
			max_body_size 1024
			client svc {
				secret_hash $2a$10$abc
				redirect_uri https://a.example/cb https://b.example/cb
				grant_types client_credentials
				scopes read write
			}
			client app {
				redirect_uri http://127.0.0.1/cb
				skip_consent
			}
		}`,
		"oauth2 {\n access_token_store cassandra {\n hosts 127.0.0.1:9042 127.0.0.2\n keyspace oauth2\n read_consistency local_quorum\n serial_consistency LOCAL_SERIAL\n timeout 2s\n }\n}",
		"oauth2 {\n access_token_store cache\n authorization_code_store cache\n}",
		"oauth2 {\n access_token_store nosuch\n}",
		"oauth2 {\n access_token_store\n}",
		"oauth2 {\n client a\n client a\n}",
		"oauth2 {\n client {\n }\n}",
		"oauth2 {\n purge_every 1s 2s\n}",
		"oauth2 {\n purge_batch -5\n}",
		"oauth2 {\n purge_batch 9223372036854775807\n}",
		"oauth2 {\n access_token_lifetime 0s\n}",
		"oauth2 {\n client \"\" {\n scopes \"\" \"a b\"\n }\n}",
		"oauth2 {\n issuer `https://x`\n token_secret <<EOF\n\tsecret\n\tEOF\n}",
		"oauth2 {\n max_body_size 99999999999999999999\n}",
		"oauth2 {\n store_timeout 1d\n}",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, input string) {
		// JSON cannot carry invalid UTF-8; Caddy reads Caddyfiles as text.
		if !utf8.ValidString(input) {
			return
		}
		d := storetest.FuzzDispenser(input)
		if d == nil {
			return
		}
		app := new(App)
		if err := app.UnmarshalCaddyfile(d); err != nil {
			return
		}
		storetest.CheckRoundTrip(t, input, app)
		for _, raw := range []json.RawMessage{app.AccessTokenStoreRaw, app.AuthorizationCodeStoreRaw} {
			if raw == nil {
				continue
			}
			var m map[string]any
			if err := json.Unmarshal(raw, &m); err != nil {
				t.Fatalf("%q accepted with store %s: %v", input, raw, err)
			}
			if driver, _ := m["driver"].(string); driver == "" {
				t.Fatalf("%q accepted with store %s: no driver", input, raw)
			}
		}
		ids := map[string]bool{}
		for _, c := range app.Clients {
			if ids[c.ID] {
				t.Fatalf("%q accepted with client %q twice", input, c.ID)
			}
			ids[c.ID] = true
		}
		for _, d := range []int64{int64(app.PurgeEvery), int64(app.AuthorizationCodeLifetime), int64(app.AccessTokenLifetime),
			int64(app.RefreshTokenLifetime), int64(app.StoreTimeout), int64(app.ValidationCache), int64(app.PurgeBatch), app.MaxBodySize} {
			if d < 0 {
				t.Fatalf("%q accepted with a negative duration or size: %+v", input, app)
			}
		}
	})
}

// FuzzUnmarshalHandlers feeds arbitrary Caddyfile text to both handler
// directives, oauth2_server and oauth2_guard. Neither panics, and what they
// accept re-marshals to JSON that reads back unchanged; the server, which
// takes no options, accepts only an empty config.
func FuzzUnmarshalHandlers(f *testing.F) {
	for _, s := range []string{
		"oauth2_server",
		"oauth2_server x",
		"oauth2_server {\n issuer x\n}",
		"oauth2_server {\n}",
		"oauth2_guard",
		"oauth2_guard read write",
		"oauth2_guard {\n scopes read\n realm my-api\n keep_authorization\n}",
		"oauth2_guard a {\n scopes b c\n}",
		"oauth2_guard {\n scope read\n}",
		"oauth2_guard {\n scopes\n}",
		"oauth2_guard {\n realm a b\n}",
		"oauth2_guard {\n realm \"a\\\"b\"\n}",
		"oauth2_guard {\n realm a\n realm b\n}",
		"oauth2_guard {\n keep_authorization yes\n}",
		"oauth2_guard {\n {\n }\n}",
		"oauth2_guard \"\" {\n scopes \"\"\n}",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, input string) {
		if !utf8.ValidString(input) {
			return
		}
		d := storetest.FuzzDispenser(input)
		if d == nil {
			return
		}
		if s := new(Server); s.UnmarshalCaddyfile(d) == nil {
			if b, err := json.Marshal(s); err != nil || string(b) != "{}" {
				t.Fatalf("%q accepted as oauth2_server, marshals to %s: %v", input, b, err)
			}
		}
		g := new(Guard)
		if err := g.UnmarshalCaddyfile(storetest.FuzzDispenser(input)); err != nil {
			return
		}
		storetest.CheckRoundTrip(t, input, g)
	})
}
