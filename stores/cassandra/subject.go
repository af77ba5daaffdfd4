package cassandra

import (
	"context"
	"errors"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"

	"github.com/tokengate/caddy-oauth2/stores"
)

// RevokeSubject deletes every code, access token and refresh token of a
// resource owner and/or a client, found through the subject and client_id
// indexes of the schema, then marks their grant families revoked (see
// stores.SubjectRevoker). It returns how many codes and tokens it deleted.
func (e *Engine) RevokeSubject(ctx context.Context, subject, clientID string, until time.Time) (int64, error) {
	if subject == "" && clientID == "" {
		return 0, errors.New("revoke: a subject or a client is required")
	}
	s, err := e.sess(ctx)
	if err != nil {
		return 0, err
	}
	// One indexed column per query, the other filtered here: a classic
	// secondary index (Cassandra 4) cannot serve both without ALLOW
	// FILTERING.
	col, val := "subject", subject
	if subject == "" {
		col, val = "client_id", clientID
	}
	match := func(sub, cli string) bool { return stores.RevokedBySubject(sub, cli, subject, clientID) }
	ks := e.cfg.Keyspace
	families := map[string]bool{}
	var n int64

	var codeKeys []string
	iter := s.Query("SELECT key, subject, client_id, family FROM "+ks+".codes WHERE "+col+" = ?", val).
		Consistency(e.cfg.Consistency.Read).Idempotent(true).PageSize(1000).IterContext(ctx)
	var key, sub, cli, fam string
	for iter.Scan(&key, &sub, &cli, &fam) {
		if match(sub, cli) {
			codeKeys = append(codeKeys, key)
			if fam != "" {
				families[fam] = true
			}
		}
	}
	if err := iter.Close(); err != nil {
		return 0, stores.Unavailable(err)
	}
	type ref struct{ kind, key, family string }
	var refs []ref
	iter = s.Query("SELECT kind, key, subject, client_id, family FROM "+ks+".tokens WHERE "+col+" = ?", val).
		Consistency(e.cfg.Consistency.Read).Idempotent(true).PageSize(1000).IterContext(ctx)
	var kind string
	for iter.Scan(&kind, &key, &sub, &cli, &fam) {
		if match(sub, cli) {
			refs = append(refs, ref{kind, key, fam})
			if fam != "" && kind == stores.RefreshToken.String() {
				families[fam] = true
			}
		}
	}
	if err := iter.Close(); err != nil {
		return 0, stores.Unavailable(err)
	}
	if subject != "" && (clientID == "" || clientID == subject) {
		// client_credentials tokens have no subject: the client is theirs
		// (stores.RevokedBySubject), found by the client_id index.
		iter = s.Query("SELECT kind, key, subject, client_id, family FROM "+ks+".tokens WHERE client_id = ?", subject).
			Consistency(e.cfg.Consistency.Read).Idempotent(true).PageSize(1000).IterContext(ctx)
		for iter.Scan(&kind, &key, &sub, &cli, &fam) {
			if sub == "" && match(sub, cli) {
				refs = append(refs, ref{kind, key, fam})
			}
		}
		if err := iter.Close(); err != nil {
			return 0, stores.Unavailable(err)
		}
	}

	for i := 0; i < len(codeKeys); i += tokenBatch {
		b := s.Batch(gocql.UnloggedBatch).Consistency(e.cfg.Consistency.Write)
		for _, k := range codeKeys[i:min(i+tokenBatch, len(codeKeys))] {
			b.Query("DELETE FROM "+ks+".codes WHERE key = ?", k)
		}
		if err := b.ExecContext(ctx); err != nil {
			return n, stores.Unavailable(err)
		}
		n += int64(min(tokenBatch, len(codeKeys)-i))
	}
	for i := 0; i < len(refs); i += tokenBatch {
		b := s.Batch(gocql.UnloggedBatch).Consistency(e.cfg.Consistency.Write)
		for _, r := range refs[i:min(i+tokenBatch, len(refs))] {
			b.Query(e.q.deleteToken, r.kind, r.key)
			if r.family != "" {
				b.Query(e.q.deleteFamily, r.family, r.kind, r.key)
			}
		}
		if err := b.ExecContext(ctx); err != nil {
			return n, stores.Unavailable(err)
		}
		n += int64(min(tokenBatch, len(refs)-i))
	}
	for f := range families {
		if err := e.RevokeFamily(ctx, f, until); err != nil {
			return n, err
		}
	}
	return n, nil
}

var _ stores.SubjectRevoker = (*Engine)(nil)
