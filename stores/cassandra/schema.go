package cassandra

import (
	"strings"

	schemafiles "github.com/tokengate/caddy-oauth2/sql"
)

// The tables, in the keyspace the store is configured with. Every row is
// written USING TTL (its remaining lifetime, rounded up to a second), so
// Cassandra drops expired data itself; expires_at is still checked on each
// read because TTLs have a granularity of one second.
//
//   - codes: authorization codes, one partition each.
//   - tokens: access and refresh tokens, partition (kind, key), so an
//     access token can never be found as a refresh token.
//   - tokens_by_family: the keys of each grant family (partition = family),
//     so RevokeFamily needs no ALLOW FILTERING and no secondary index. It is
//     written before the tokens, so no token is ever unreachable from it.
//   - consumed: which codes and refresh tokens were redeemed. Only
//     lightweight transactions write it (INSERT ... IF NOT EXISTS), so the
//     Paxos timestamps never mix with plain writes of the same cells.
//   - revoked_families: revoked grant families (partition = family), one
//     row per revocation clustered by its end, so a later, shorter
//     revocation never shortens an earlier one.
//   - signing_keys: the generated JWT signing keys, sealed, see keys.go.
//   - clients: the registered clients, see clients.go.
//   - single_use: single-use values (stores.SingleUse), see once.go.
//
// The statements are those of sql/cassandra/oauth-server.cql, which names
// keyspace oauth.
var schemaTables = []string{"codes", "tokens", "tokens_by_family", "consumed", "revoked_families", "signing_keys", "clients", "single_use"}

// addedColumns are the columns added to tables of an earlier schema
// (version 4's audiences, version 5's DPoP thumbprints and OpenID Connect
// state), which CREATE TABLE IF NOT EXISTS leaves out.
var addedColumns = []struct{ table, column, typ string }{
	{"codes", "audience", "text"},
	{"tokens", "audience", "text"},
	{"codes", "jkt", "text"},
	{"codes", "oidc", "text"},
	{"tokens", "jkt", "text"},
	{"tokens", "oidc", "text"},
}

// legacyIndexes turns the storage-attached indexes of the schema into
// classic secondary indexes, for clusters older than Cassandra 5.0.
func legacyIndexes(stmts []string) []string {
	out := make([]string, len(stmts))
	for i, s := range stmts {
		out[i] = strings.Replace(s, " USING 'sai'", "", 1)
	}
	return out
}

// schemaStatements returns the CREATE TABLE statements of
// sql/cassandra/oauth-server.cql for keyspace ks.
func schemaStatements(ks string) []string {
	b, err := schemafiles.Files.ReadFile("cassandra/oauth-server.cql")
	if err != nil {
		panic("cassandra schema not embedded: " + err.Error()) // a build defect, caught by tests
	}
	var lines []string
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "--") {
			lines = append(lines, line)
		}
	}
	var out []string
	for _, stmt := range strings.Split(strings.Join(lines, "\n"), ";") {
		if stmt = strings.TrimSpace(stmt); stmt != "" {
			stmt = strings.Replace(stmt, "IF NOT EXISTS oauth.", "IF NOT EXISTS "+ks+".", 1)
			stmt = strings.Replace(stmt, " ON oauth.", " ON "+ks+".", 1)
			out = append(out, stmt)
		}
	}
	return out
}
