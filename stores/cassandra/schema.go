package cassandra

import "strings"

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
//
// sql/cassandra/oauth-server.cql holds the same statements for keyspace
// oauth; a test checks that they match.
var schemaTables = []string{"codes", "tokens", "tokens_by_family", "consumed"}

const schemaTemplate = `CREATE TABLE IF NOT EXISTS {ks}.codes (
    key text PRIMARY KEY,
    client_id text,
    subject text,
    redirect_uri text,
    scope text,
    code_challenge text,
    code_challenge_method text,
    family text,
    issued_at timestamp,
    expires_at timestamp
);

CREATE TABLE IF NOT EXISTS {ks}.tokens (
    kind text,
    key text,
    client_id text,
    subject text,
    scope text,
    family text,
    issued_at timestamp,
    expires_at timestamp,
    PRIMARY KEY ((kind, key))
);

CREATE TABLE IF NOT EXISTS {ks}.tokens_by_family (
    family text,
    kind text,
    key text,
    PRIMARY KEY ((family), kind, key)
);

CREATE TABLE IF NOT EXISTS {ks}.consumed (
    kind text,
    key text,
    consumer uuid,
    consumed_at timestamp,
    PRIMARY KEY ((kind, key))
);`

// schemaStatements returns the CREATE TABLE statements for keyspace ks.
func schemaStatements(ks string) []string {
	var out []string
	for _, stmt := range strings.Split(strings.ReplaceAll(schemaTemplate, "{ks}", ks), ";") {
		if stmt = strings.TrimSpace(stmt); stmt != "" {
			out = append(out, stmt)
		}
	}
	return out
}
