package oauth2

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path"
	"slices"
	"strings"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"
	"golang.org/x/crypto/bcrypt"
	"golang.org/x/term"

	schemas "github.com/tokengate/caddy-oauth2/sql"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "oauth2",
		Usage: "<schema|hash-secret|revoke|purge|clients> ...",
		Short: "Operate the oauth2 app: schemas, client secrets, purge, clients",
		Long: `
Operator commands of the oauth2 plugin.

  caddy oauth2 schema <mysql|postgres|sqlite|sqlserver|oracle|db2|cassandra>
      Prints the bundled schema file for a store backend.

  caddy oauth2 hash-secret
      Reads a client secret from the terminal (or one line of standard
      input) and prints its bcrypt hash for a client's secret_hash. The
      secret is never taken from the command line, where other users and
      shell history would see it.

  caddy oauth2 revoke [--subject <user>] [--client <client_id>] [--address <admin address>]
      Revokes every code, access token and refresh token of a user (on
      every client, or on the one given), or of a client, through the admin
      API of the running Caddy, and prints how many.

  caddy oauth2 purge [--address <admin address>]
      Removes expired codes and tokens now, through the admin API of the
      running Caddy, and prints the counts.

  caddy oauth2 clients [list] [--address <admin address>]
      Lists every client, configured ("source": "config") or registered at
      runtime ("admin", "dynamic"), never their secrets, as JSON.

  caddy oauth2 clients add [--id <id>] [--name <name>] [--redirect-uri <uri>]...
                           [--grant-type <grant>]... [--scope <scope>]...
                           [--public | --secret-stdin] [--metadata <file|->]
                           [--skip-consent] [--introspect] [--resource <uri>]...
      Registers a client in the access token store and prints it with its
      client_secret, shown this once. The secret is generated unless
      --secret-stdin reads one from standard input; never from argv.

  caddy oauth2 clients show <id>
  caddy oauth2 clients update <id> [the flags of add but --id, --public, --secret-stdin]
  caddy oauth2 clients delete <id>
      Shows, changes (the flags given replace those fields) or deletes a
      registered client; deleting revokes its codes and tokens everywhere.

  caddy oauth2 clients rotate-secret <id> [--grace 24h]
      Gives a registered client a new secret and prints it, this once; the
      old one keeps working for the grace period.

The admin address defaults to the one in the running configuration's
autosave, else localhost:2019.`,
		CobraFunc: func(cmd *cobra.Command) {
			cmd.AddCommand(&cobra.Command{
				Use:       "schema <mysql|postgres|sqlite|sqlserver|oracle|db2|cassandra>",
				Short:     "Print the bundled schema for a store backend",
				Args:      cobra.ExactArgs(1),
				ValidArgs: schemaNames(),
				RunE: func(c *cobra.Command, args []string) error {
					return printSchema(c.OutOrStdout(), args[0])
				},
			})
			cmd.AddCommand(&cobra.Command{
				Use:   "hash-secret",
				Short: "Hash a client secret read from the terminal or stdin",
				Args:  cobra.NoArgs,
				RunE: func(c *cobra.Command, _ []string) error {
					return hashSecret(c.InOrStdin(), c.OutOrStdout(), c.ErrOrStderr())
				},
			})
			purge := &cobra.Command{
				Use:   "purge",
				Short: "Remove expired codes and tokens now",
				Args:  cobra.NoArgs,
				RunE: func(c *cobra.Command, _ []string) error {
					return adminCall(c, http.MethodPost, "/oauth2/purge")
				},
			}
			cmd.AddCommand(clientsCommand())
			revoke := &cobra.Command{
				Use:   "revoke",
				Short: "Revoke every code and token of a user and/or a client",
				Args:  cobra.NoArgs,
				RunE: func(c *cobra.Command, _ []string) error {
					subject, _ := c.Flags().GetString("subject")
					client, _ := c.Flags().GetString("client")
					if subject == "" && client == "" {
						return errors.New("give --subject, --client or both")
					}
					body, err := json.Marshal(revokeRequest{Subject: subject, ClientID: client})
					if err != nil {
						return err
					}
					return adminCallBody(c, http.MethodPost, "/oauth2/revoke", bytes.NewReader(body))
				},
			}
			revoke.Flags().String("subject", "", "The user whose codes and tokens to revoke")
			revoke.Flags().String("client", "", "The client whose codes and tokens to revoke")
			for _, sub := range []*cobra.Command{revoke, purge} {
				sub.Flags().String("address", "", "The address of Caddy's admin API")
				cmd.AddCommand(sub)
			}
		},
	})
}

// schemaNames lists the backends with a bundled schema.
func schemaNames() []string {
	dirs, _ := fs.ReadDir(schemas.Files, ".")
	var names []string
	for _, d := range dirs {
		if d.IsDir() {
			names = append(names, d.Name())
		}
	}
	slices.Sort(names)
	return names
}

func printSchema(w io.Writer, name string) error {
	file := "oauth-server.sql"
	if name == "cassandra" {
		file = "oauth-server.cql"
	}
	if !slices.Contains(schemaNames(), name) {
		return fmt.Errorf("unknown store backend %q: want one of %s", name, strings.Join(schemaNames(), ", "))
	}
	b, err := schemas.Files.ReadFile(path.Join(name, file))
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

// hashSecretCost is the bcrypt cost of `caddy oauth2 hash-secret`. The
// server verifies any cost; a successful verification is remembered, so
// the cost is paid on a client's first request and on every wrong secret.
const hashSecretCost = bcrypt.DefaultCost

func hashSecret(in io.Reader, out, prompt io.Writer) error {
	var secret []byte
	if f, ok := in.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprint(prompt, "Client secret: ")
		s, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(prompt)
		if err != nil {
			return err
		}
		fmt.Fprint(prompt, "Again: ")
		again, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(prompt)
		if err != nil {
			return err
		}
		if !bytes.Equal(s, again) {
			return errors.New("the secrets do not match")
		}
		secret = s
	} else {
		line, err := bufio.NewReader(in).ReadBytes('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		secret = bytes.TrimRight(line, "\r\n")
	}
	if len(secret) == 0 {
		return errors.New("empty secret")
	}
	if len(secret) > 72 {
		return errors.New("secret longer than 72 bytes, the most bcrypt uses")
	}
	h, err := bcrypt.GenerateFromPassword(secret, hashSecretCost)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(out, string(h))
	return err
}

// adminCall calls an oauth2 admin route of the running Caddy and copies the
// answer to standard output.
func adminCall(c *cobra.Command, method, uri string) error {
	return adminCallBody(c, method, uri, nil)
}

func adminCallBody(c *cobra.Command, method, uri string, body io.Reader) error {
	addr, _ := c.Flags().GetString("address")
	addr, err := caddycmd.DetermineAdminAPIAddress(addr, nil, "", "")
	if err != nil {
		return err
	}
	resp, err := caddycmd.AdminAPIRequest(addr, method, uri, nil, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, err = io.Copy(c.OutOrStdout(), resp.Body)
	return err
}
