// Command caddy is Caddy with its standard modules and this plugin, so that
// `go run ./cmd/caddy` works without xcaddy.
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddyserver/caddy/v2/modules/standard"
	_ "github.com/tokengate/caddy-oauth2"
)

func main() {
	caddycmd.Main()
}
