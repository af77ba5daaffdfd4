package cache

import (
	"context"
	"errors"
	"time"

	"github.com/tokengate/caddy-oauth2/stores"
)

// RevokeSubject deletes every code, access token and refresh token of a
// resource owner and/or a client, then marks their grant families revoked
// (see stores.SubjectRevoker). The cache keeps no index by subject or
// client, so it walks every record once: about a second per million on
// two cores, for an operation an operator runs by hand.
func (e *Engine) RevokeSubject(ctx context.Context, subject, clientID string, until time.Time) (int64, error) {
	if err := e.check(ctx); err != nil {
		return 0, err
	}
	if subject == "" && clientID == "" {
		return 0, errors.New("revoke: a subject or a client is required")
	}
	var keys []string
	families := map[string]bool{}
	consider := func(key string, v []byte) {
		if len(v) < headerLen {
			return
		}
		var cli, sub, fam string
		switch v[0] {
		case recCode:
			c, ok := decodeCode(v, "", &e.tab)
			if !ok {
				return
			}
			cli, sub, fam = c.ClientID, c.Subject, c.Family
		case recAccess, recRefresh:
			t, ok := decodeToken(v, "", &e.tab)
			if !ok {
				return
			}
			cli, sub, fam = t.ClientID, t.Subject, t.Family
			if v[0] == recAccess {
				fam = "" // access tokens go with their key; families come from grants
			}
		default:
			return
		}
		if !stores.RevokedBySubject(sub, cli, subject, clientID) {
			return
		}
		keys = append(keys, key)
		if fam != "" {
			families[fam] = true
		}
	}
	it := e.cache.Iterator()
	for it.SetNext() {
		info, err := it.Value()
		if err != nil {
			continue // the entry went away during the walk
		}
		consider(info.Key(), info.Value())
	}
	// Live records rescued from a full cache are revoked too.
	if e.over.n.Load() > 0 {
		e.over.mu.Lock()
		rescued := make(map[string][]byte, len(e.over.entries))
		for k, ent := range e.over.entries {
			rescued[k] = ent.v
		}
		e.over.mu.Unlock()
		for k, v := range rescued {
			consider(k, v)
		}
	}
	var n int64
	for _, k := range keys {
		if err := e.check(ctx); err != nil {
			return n, err
		}
		mu := e.keyLock(k)
		mu.Lock()
		v, err := e.get(k)
		if err == nil && v != nil {
			err = e.del(k)
			if err == nil {
				n++
			}
		}
		mu.Unlock()
		if err != nil {
			return n, err
		}
	}
	for f := range families {
		if err := e.RevokeFamily(ctx, f, until); err != nil {
			return n, err
		}
	}
	return n, nil
}

var _ stores.SubjectRevoker = (*Engine)(nil)
