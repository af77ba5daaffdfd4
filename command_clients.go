package oauth2

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"

	"github.com/spf13/cobra"
)

// clientsCommand is `caddy oauth2 clients`: the registered clients through
// the admin API. Bare, it lists them.
func clientsCommand() *cobra.Command {
	clients := &cobra.Command{
		Use:   "clients [add|list|show|update|delete|rotate-secret]",
		Short: "List and manage the clients (list without a subcommand)",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return adminCall(c, http.MethodGet, "/oauth2/clients")
		},
	}
	list := &cobra.Command{
		Use:   "list",
		Short: "List every client, configured or registered, without secrets",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return adminCall(c, http.MethodGet, "/oauth2/clients")
		},
	}
	add := &cobra.Command{
		Use:   "add",
		Short: "Register a client; prints its secret, this once",
		Long: `Registers a client through the admin API and prints it as JSON, with its
client_secret (generated unless --secret-stdin gives one), which is shown
this once only. --metadata <file|-> reads RFC 7591 client metadata JSON
instead of, or beneath, the flags.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			m, err := metadataFromFlags(c, nil)
			if err != nil {
				return err
			}
			return adminCallJSON(c, http.MethodPost, "/oauth2/clients", m)
		},
	}
	show := &cobra.Command{
		Use:   "show <client_id>",
		Short: "Show one client, without its secret",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			return adminCall(c, http.MethodGet, clientPath(args[0]))
		},
	}
	update := &cobra.Command{
		Use:   "update <client_id>",
		Short: "Change a registered client: the flags given replace those fields",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			var cur map[string]any
			if err := adminGetJSON(c, clientPath(args[0]), &cur); err != nil {
				return err
			}
			m, err := metadataFromFlags(c, cur)
			if err != nil {
				return err
			}
			return adminCallJSON(c, http.MethodPut, clientPath(args[0]), m)
		},
	}
	del := &cobra.Command{
		Use:   "delete <client_id>",
		Short: "Delete a registered client and revoke its codes and tokens",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if err := adminCall(c, http.MethodDelete, clientPath(args[0])); err != nil {
				return err
			}
			_, err := fmt.Fprintf(c.OutOrStdout(), "deleted %s\n", args[0])
			return err
		},
	}
	rotate := &cobra.Command{
		Use:   "rotate-secret <client_id>",
		Short: "Give a registered client a new secret; prints it, this once",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			grace, _ := c.Flags().GetString("grace")
			return adminCallJSON(c, http.MethodPost, clientPath(args[0])+"/secret", rotateRequest{Grace: grace})
		},
	}
	rotate.Flags().String("grace", "", "How long the old secret keeps working, such as 24h (default: not at all)")
	for _, sub := range []*cobra.Command{add, update} {
		f := sub.Flags()
		f.String("metadata", "", "A file of RFC 7591 client metadata JSON, or - for standard input")
		f.String("name", "", "The display name on the consent page (client_name)")
		f.StringArray("redirect-uri", nil, "A redirect URI (repeat for more)")
		f.StringArray("grant-type", nil, "authorization_code, refresh_token or client_credentials (repeat for more)")
		f.StringArray("scope", nil, "A scope the client may be granted (repeat for more)")
		f.StringArray("resource", nil, "A resource indicator (RFC 8707) the client may ask for (repeat for more)")
		f.String("logo-uri", "", "An https URL of the client's logo")
		f.Bool("skip-consent", false, "Issue codes without the consent page")
		f.Bool("introspect", false, "Let the client introspect other clients' tokens")
	}
	add.Flags().String("id", "", "The client_id (default: generated)")
	add.Flags().Bool("public", false, "A public client (token_endpoint_auth_method none): no secret")
	add.Flags().Bool("secret-stdin", false, "Read the client secret from standard input instead of generating one")
	clients.Flags().String("address", "", "The address of Caddy's admin API")
	for _, sub := range []*cobra.Command{list, add, show, update, del, rotate} {
		sub.Flags().String("address", "", "The address of Caddy's admin API")
		clients.AddCommand(sub)
	}
	return clients
}

func clientPath(id string) string { return "/oauth2/clients/" + url.PathEscape(id) }

// metadataFromFlags builds the metadata of add (base nil) or update (base
// the client as it is): --metadata first, then each flag given.
func metadataFromFlags(c *cobra.Command, base map[string]any) (map[string]any, error) {
	m := map[string]any{}
	for k, v := range base {
		m[k] = v
	}
	f := c.Flags()
	if file, _ := f.GetString("metadata"); file != "" {
		var b []byte
		var err error
		if file == "-" {
			b, err = io.ReadAll(io.LimitReader(c.InOrStdin(), 1<<20))
		} else {
			b, err = os.ReadFile(file)
		}
		if err != nil {
			return nil, err
		}
		var given map[string]any
		if err := json.Unmarshal(b, &given); err != nil {
			return nil, fmt.Errorf("--metadata: %v", err)
		}
		for k, v := range given {
			m[k] = v
		}
	}
	set := func(flag, field string, v any) {
		if f.Changed(flag) {
			m[field] = v
		}
	}
	str := func(n string) string { s, _ := f.GetString(n); return s }
	arr := func(n string) []string { s, _ := f.GetStringArray(n); return s }
	boolean := func(n string) bool { b, _ := f.GetBool(n); return b }
	set("name", "client_name", str("name"))
	set("redirect-uri", "redirect_uris", arr("redirect-uri"))
	set("grant-type", "grant_types", arr("grant-type"))
	set("scope", "scope", strings.Join(arr("scope"), " "))
	set("resource", "resources", arr("resource"))
	set("logo-uri", "logo_uri", str("logo-uri"))
	set("skip-consent", "skip_consent", boolean("skip-consent"))
	set("introspect", "introspect", boolean("introspect"))
	if base != nil {
		return m, nil
	}
	set("id", "client_id", str("id"))
	if boolean("public") {
		m["token_endpoint_auth_method"] = "none"
	}
	if boolean("secret-stdin") {
		if boolean("public") {
			return nil, errors.New("a public client has no secret")
		}
		// Never from argv, where other users and shell history see it.
		line, err := bufio.NewReader(c.InOrStdin()).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, err
		}
		if line = strings.TrimRight(line, "\r\n"); line == "" {
			return nil, errors.New("empty secret on standard input")
		}
		m["client_secret"] = line
	}
	return m, nil
}

func adminCallJSON(c *cobra.Command, method, uri string, v any) error {
	body, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return adminCallBody(c, method, uri, bytes.NewReader(body))
}

func adminGetJSON(c *cobra.Command, uri string, v any) error {
	var out bytes.Buffer
	saved := c.OutOrStdout()
	c.SetOut(&out)
	err := adminCall(c, http.MethodGet, uri)
	c.SetOut(saved)
	if err != nil {
		return err
	}
	return json.Unmarshal(out.Bytes(), v)
}
