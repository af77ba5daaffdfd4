package oauth2

// The operator surface through a real Caddy process: the admin routes and
// the `caddy oauth2` subcommands, run as a user would run them.

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	schemas "github.com/tokengate/caddy-oauth2/sql"
)

// caddyCLI runs this test binary as the caddy command with args and stdin,
// and returns its standard output, standard error and exit code.
func caddyCLI(t *testing.T, stdin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, exe, args...)
	cmd.Env = append(os.Environ(), childEnv+"=1", "HOME="+t.TempDir(), "XDG_CONFIG_HOME="+t.TempDir(), "XDG_DATA_HOME="+t.TempDir())
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return out.String(), errb.String(), ee.ExitCode()
	} else if err != nil {
		t.Fatalf("running caddy %v: %v", args, err)
	}
	return out.String(), errb.String(), 0
}

func TestCLISchema(t *testing.T) {
	for _, name := range []string{"mysql", "postgres", "sqlite", "sqlserver", "oracle", "db2", "cassandra"} {
		file := name + "/oauth-server.sql"
		if name == "cassandra" {
			file = "cassandra/oauth-server.cql"
		}
		want, err := schemas.Files.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		out, errs, code := caddyCLI(t, "", "oauth2", "schema", name)
		if code != 0 || out != string(want) {
			t.Errorf("caddy oauth2 schema %s: exit %d, %d bytes (want %d)\n%s", name, code, len(out), len(want), errs)
		}
	}
	_, errs, code := caddyCLI(t, "", "oauth2", "schema", "mongodb")
	if code == 0 || !strings.Contains(errs, `unknown store backend "mongodb"`) {
		t.Errorf("unknown backend: exit %d, stderr %q", code, errs)
	}
}

func TestCLIHashSecret(t *testing.T) {
	out, errs, code := caddyCLI(t, "correct horse battery staple\n", "oauth2", "hash-secret")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	hash := strings.TrimSpace(out)
	if err := bcrypt.CompareHashAndPassword([]byte(hash), []byte("correct horse battery staple")); err != nil {
		t.Fatalf("printed hash %q does not verify: %v", hash, err)
	}
	if cost, _ := bcrypt.Cost([]byte(hash)); cost != hashSecretCost {
		t.Errorf("cost %d, want %d", cost, hashSecretCost)
	}
	if strings.Contains(out+errs, "horse") {
		t.Error("the secret was echoed")
	}
	if _, errs, code := caddyCLI(t, "", "oauth2", "hash-secret"); code == 0 || !strings.Contains(errs, "empty secret") {
		t.Errorf("empty input: exit %d, %q", code, errs)
	}
}

func TestAdminPurgeAndClients(t *testing.T) {
	const admin = "127.0.0.1:2389"
	conf := `{
	admin ` + admin + `
	default_bind 127.0.0.1
	http_port 19380
	https_port 19443
	grace_period 1s
	persist_config off
	oauth2 {
		token_secret "ops-test-secret-of-at-least-32-bytes!"
		purge_every 1h
		access_token_lifetime 1s
		client svc {
			secret_hash ` + secretHash + `
			grant_types client_credentials
			scopes read
		}
		client app {
			redirect_uri http://127.0.0.1:9999/cb
			scopes read write
		}
	}
}
http://127.0.0.1:19380 {
	oauth2_server
}
`
	path := filepath.Join(t.TempDir(), "Caddyfile")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startCaddyProcess(t, path, 19380)
	cc := &clientcredentials.Config{
		ClientID: "svc", ClientSecret: "s3cret", TokenURL: "http://127.0.0.1:19380/oauth2/token",
		AuthStyle: oauth2.AuthStyleInHeader,
	}
	const issued = 5
	for range issued {
		if _, err := cc.Token(context.Background()); err != nil {
			t.Fatalf("client_credentials: %v\n%s", err, p.log)
		}
	}
	time.Sleep(1100 * time.Millisecond) // past the tokens' 1s lifetime

	out, errs, code := caddyCLI(t, "", "oauth2", "purge", "--address", admin)
	if code != 0 {
		t.Fatalf("caddy oauth2 purge: exit %d: %s", code, errs)
	}
	var counts struct{ Codes, Tokens int64 }
	if err := json.Unmarshal([]byte(out), &counts); err != nil || counts.Tokens != issued {
		t.Fatalf("purge answered %q (%v), want %d tokens", out, err, issued)
	}
	out, _, _ = caddyCLI(t, "", "oauth2", "purge", "--address", admin)
	if err := json.Unmarshal([]byte(out), &counts); err != nil || counts.Tokens != 0 {
		t.Fatalf("second purge answered %q, want 0 tokens", out)
	}

	out, errs, code = caddyCLI(t, "", "oauth2", "clients", "--address", admin)
	if code != 0 {
		t.Fatalf("caddy oauth2 clients: exit %d: %s", code, errs)
	}
	var clients []adminClient
	if err := json.Unmarshal([]byte(out), &clients); err != nil {
		t.Fatalf("clients answered %q: %v", out, err)
	}
	if len(clients) != 2 || clients[0].ID != "app" || clients[0].Type != "public" ||
		clients[1].ID != "svc" || clients[1].Type != "confidential" ||
		strings.Join(clients[0].GrantTypes, " ") != "authorization_code refresh_token" {
		t.Errorf("clients: %+v", clients)
	}
	if strings.Contains(out, "$2a$") || strings.Contains(out, "secret") {
		t.Errorf("the client list shows a secret: %s", out)
	}
}
