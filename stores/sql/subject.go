package sql

import (
	"context"
	"errors"
	"time"

	"github.com/tokengate/caddy-oauth2/stores"
)

// RevokeSubject deletes every code, access token and refresh token of a
// resource owner and/or a client, then marks their grant families revoked
// until the given time, so that a redemption or refresh in flight cannot
// bring a token back (see stores.SubjectRevoker). It returns how many
// codes and tokens it deleted.
func (e *Engine) RevokeSubject(ctx context.Context, subject, clientID string, until time.Time) (int64, error) {
	var q ownerStatements
	var args []any
	switch {
	case subject != "" && clientID != "":
		q, args = ownerStatements{e.q.bothFamilies, e.q.bothCodes, e.q.bothAccess, e.q.bothRefresh}, []any{subject, clientID}
	case subject != "":
		q, args = ownerStatements{e.q.subjectFamilies, e.q.subjectCodes, e.q.subjectAccess, e.q.subjectRefresh}, []any{subject}
	case clientID != "":
		q, args = ownerStatements{e.q.clientFamilies, e.q.clientCodes, e.q.clientAccess, e.q.clientRefresh}, []any{clientID}
	default:
		return 0, errors.New("revoke: a subject or a client is required")
	}
	rows, err := e.db.QueryContext(ctx, q.families, append(args, args...)...)
	if err != nil {
		return 0, e.fail("revoke subject", err)
	}
	var families []string
	for rows.Next() {
		var f string
		if err := rows.Scan(&f); err != nil {
			rows.Close()
			return 0, e.fail("revoke subject", err)
		}
		if f != "" {
			families = append(families, f)
		}
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return 0, e.fail("revoke subject", err)
	}
	type del struct {
		stmt string
		args []any
	}
	dels := []del{{q.codes, args}, {q.access, args}, {q.refresh, args}}
	if subject != "" && (clientID == "" || clientID == subject) {
		// Tokens without a subject (client_credentials) are their client's.
		dels = append(dels, del{e.q.serviceAccess, []any{subject}}, del{e.q.serviceRefresh, []any{subject}})
	}
	var n int64
	for _, d := range dels {
		res, err := e.db.ExecContext(ctx, d.stmt, d.args...)
		if err != nil {
			return n, e.fail("revoke subject", err)
		}
		if k, err := res.RowsAffected(); err == nil {
			n += k
		}
	}
	for _, f := range families {
		if err := e.RevokeFamily(ctx, f, until); err != nil {
			return n, err
		}
	}
	return n, nil
}

var _ stores.SubjectRevoker = (*Engine)(nil)
