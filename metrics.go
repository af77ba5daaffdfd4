package oauth2

import (
	"context"
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokengate/caddy-oauth2/dpop"
	"github.com/tokengate/caddy-oauth2/issuer"
	"github.com/tokengate/caddy-oauth2/stores"
	"github.com/tokengate/caddy-oauth2/stores/cache"
	"github.com/tokengate/caddy-oauth2/stores/lookupcache"
	"github.com/tokengate/caddy-oauth2/validator"
)

// metrics are the app's Prometheus collectors, registered on the config's
// registry (ctx.GetMetricsRegistry), so they appear on Caddy's admin
// /metrics next to caddy_http_* and are registered afresh with every config
// load. Label values are bounded: client ids come from the config (an
// unregistered one is counted as ""), error codes and results from the
// RFCs, never a token or a user.
type metrics struct {
	issued       *prometheus.CounterVec
	tokenErrors  *prometheus.CounterVec
	authFailures *prometheus.CounterVec
	storeOps     *prometheus.HistogramVec
	storeErrors  *prometheus.CounterVec
	purgeRuns    prometheus.Counter
	purged       *prometheus.CounterVec
	purgeTime    prometheus.Histogram
	// Runtime clients: changes by operation and origin, refused
	// registrations by reason.
	clientChanges *prometheus.CounterVec
	regRefusals   *prometheus.CounterVec
	// Client ID metadata documents that could not be used, by reason.
	documentFailures *prometheus.CounterVec
	// Pushed authorization requests by outcome; replayed client
	// assertions by client.
	parRequests      *prometheus.CounterVec
	assertionReplays *prometheus.CounterVec

	// The guard's counters, one per result, resolved once so the hot path
	// only adds to an atomic.
	guardAllowed, guardNoToken, guardInvalid, guardScope, guardUnavailable, guardOverloaded, guardBad prometheus.Counter
	guardDPoP                                                                                         prometheus.Counter
	// DPoP proofs checked at the token endpoint and the guards, by result
	// and refusal reason.
	dpopProofs *prometheus.CounterVec

	registry *prometheus.Registry
}

const metricsNamespace, metricsSubsystem = "caddy", "oauth2"

func newMetrics(reg *prometheus.Registry) (*metrics, error) {
	opts := func(name, help string) prometheus.Opts {
		return prometheus.Opts{Namespace: metricsNamespace, Subsystem: metricsSubsystem, Name: name, Help: help}
	}
	counterVec := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts(opts(name, help)), labels)
	}
	m := &metrics{
		registry:     reg,
		issued:       counterVec("tokens_issued_total", "Access tokens issued by the token endpoint.", "grant_type", "client_id"),
		tokenErrors:  counterVec("token_errors_total", "Token endpoint error responses, by RFC 6749 error code.", "error"),
		authFailures: counterVec("client_auth_failures_total", "Failed client authentications at the token, revocation and introspection endpoints.", "client_id"),
		storeErrors:  counterVec("store_errors_total", "Store operations that failed (the backend was unavailable).", "store", "op"),
		storeOps: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: metricsNamespace, Subsystem: metricsSubsystem, Name: "store_operation_duration_seconds",
			Help:    "Duration of store operations.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"store", "op"}),
		purgeRuns: prometheus.NewCounter(prometheus.CounterOpts(opts("purge_runs_total", "Runs of the purge of expired codes and tokens."))),
		purged:    counterVec("purged_total", "Expired records removed by the purge.", "kind"),
		purgeTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: metricsNamespace, Subsystem: metricsSubsystem, Name: "purge_duration_seconds",
			Help:    "Duration of purge runs.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 10),
		}),
	}
	m.clientChanges = counterVec("client_changes_total", "Registered clients created, updated and deleted through this gateway (rotated secrets count as updates), by registered_by (admin or dynamic).", "op", "registered_by")
	m.regRefusals = counterVec("registration_refusals_total", "Requests refused by the dynamic client registration endpoint, by reason (an RFC 7591 error code, invalid_token, rate_limited or max_clients).", "reason")
	m.documentFailures = counterVec("client_metadata_document_failures_total", "Client ID metadata documents that could not be used, by reason (fetch, status, too_large, redirect, address, invalid, mismatch, host, busy).", "reason")
	m.parRequests = counterVec("par_requests_total", "Requests to the pushed authorization request endpoint, by outcome (created or the RFC 6749 error code).", "outcome")
	m.assertionReplays = counterVec("client_assertion_replays_total", "private_key_jwt client assertions refused because their jti was used before, at this gateway or another sharing the code store.", "client_id")
	guard := counterVec("guard_requests_total", "Requests decided by oauth2_guard, by result.", "result")
	m.guardAllowed = guard.WithLabelValues("allowed")
	m.guardNoToken = guard.WithLabelValues("no_token")
	m.guardInvalid = guard.WithLabelValues("invalid_token")
	m.guardScope = guard.WithLabelValues("insufficient_scope")
	m.guardUnavailable = guard.WithLabelValues("unavailable")
	m.guardOverloaded = guard.WithLabelValues("overloaded")
	m.guardBad = guard.WithLabelValues("bad_request")
	m.guardDPoP = guard.WithLabelValues("invalid_dpop_proof")
	m.dpopProofs = counterVec("dpop_proofs_total", "DPoP proofs checked by the token endpoint and the guards, by result (accepted or refused) and reason of refusal (the dpop package's labels: signature, htu, replay, nonce, ...).", "result", "reason")
	for _, c := range []prometheus.Collector{m.issued, m.tokenErrors, m.authFailures, m.storeOps, m.storeErrors,
		m.purgeRuns, m.purged, m.purgeTime, m.clientChanges, m.regRefusals, m.documentFailures, m.parRequests, m.assertionReplays, guard, m.dpopProofs} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// registerFunc registers a collector whose value is read at scrape time.
func (m *metrics) registerFunc(c prometheus.Collector) error {
	return m.registry.Register(c)
}

// ClientChanged counts a change to a registered client.
func (m *metrics) ClientChanged(op, by string) { m.clientChanges.WithLabelValues(op, by).Inc() }

// RegistrationRefused counts a refused registration request.
func (m *metrics) RegistrationRefused(reason string) { m.regRefusals.WithLabelValues(reason).Inc() }

// documentFailed counts a client ID metadata document that could not be
// used.
func (m *metrics) documentFailed(reason string) { m.documentFailures.WithLabelValues(reason).Inc() }

// PARRequest implements issuer.AssertionObserver.
func (m *metrics) PARRequest(outcome string) { m.parRequests.WithLabelValues(outcome).Inc() }

// AssertionReplayed implements issuer.AssertionObserver.
func (m *metrics) AssertionReplayed(clientID string) {
	m.assertionReplays.WithLabelValues(clientID).Inc()
}

// guardResult counts one decision of the guard.
func (m *metrics) guardResult(d *validator.Denial) {
	if d == nil {
		m.guardAllowed.Inc()
		return
	}
	switch {
	case errors.Is(d.Err, validator.ErrNoToken):
		m.guardNoToken.Inc()
	case errors.Is(d.Err, validator.ErrInvalidToken):
		m.guardInvalid.Inc()
	case errors.Is(d.Err, validator.ErrInsufficientScope):
		m.guardScope.Inc()
	case errors.Is(d.Err, validator.ErrMalformedRequest):
		m.guardBad.Inc()
	case errors.As(d.Err, new(*dpop.Error)):
		m.guardDPoP.Inc()
	case errors.Is(d.Err, validator.ErrOverloaded):
		m.guardOverloaded.Inc() // 503 by choice: an issuer's introspection slots were all taken

	default:
		m.guardUnavailable.Inc()
	}
}

// dpopProof counts one DPoP proof checked: reason "" when it passed.
func (m *metrics) dpopProof(reason string) {
	if reason == "" {
		m.dpopProofs.WithLabelValues("accepted", "").Inc()
		return
	}
	m.dpopProofs.WithLabelValues("refused", reason).Inc()
}

// TokenIssued implements issuer.Observer.
func (m *metrics) TokenIssued(grantType, clientID string) {
	m.issued.WithLabelValues(grantType, clientID).Inc()
}

// TokenError implements issuer.Observer.
func (m *metrics) TokenError(code string) { m.tokenErrors.WithLabelValues(code).Inc() }

// ClientAuthFailed implements issuer.Observer.
func (m *metrics) ClientAuthFailed(clientID string) { m.authFailures.WithLabelValues(clientID).Inc() }

// purgeDone is the purger's observer.
func (m *metrics) purgeDone(codes, tokens int64, took time.Duration, _ error) {
	m.purgeRuns.Inc()
	m.purged.WithLabelValues("code").Add(float64(codes))
	m.purged.WithLabelValues("token").Add(float64(tokens))
	m.purgeTime.Observe(took.Seconds())
}

// purgeOnceDone counts the single-use values a purge removed.
func (m *metrics) purgeOnceDone(n int64) {
	m.purged.WithLabelValues("single_use").Add(float64(n))
}

// observed times and counts the operations of one configured store.
type observed struct {
	inner stores.Store
	ops   [opCount]prometheus.Observer
	errs  [opCount]prometheus.Counter
}

const (
	opInsertCode = iota
	opConsumeCode
	opPurgeCodes
	opInsertTokens
	opLookupToken
	opConsumeRefresh
	opRevokeToken
	opRevokeFamily
	opPurgeTokens
	opCount
)

var opNames = [opCount]string{"insert_code", "consume_code", "purge_codes", "insert_tokens", "lookup_token",
	"consume_refresh_token", "revoke_token", "revoke_family", "purge_tokens"}

// observe wraps s so that its operations are measured under the label
// store; an in-process store stays recognisable as one (stores.InProcess).
func (m *metrics) observe(s stores.Store, store string) stores.Store {
	o := &observed{inner: s}
	for i, name := range opNames {
		o.ops[i] = m.storeOps.WithLabelValues(store, name)
		o.errs[i] = m.storeErrors.WithLabelValues(store, name)
	}
	if _, ok := s.(stores.InProcess); ok {
		return &observedInProcess{o}
	}
	return o
}

// done records one operation that started at start. Answers such as
// ErrNotFound are not errors of the store.
func (o *observed) done(op int, start time.Time, err error) {
	o.ops[op].Observe(time.Since(start).Seconds())
	if err != nil && errors.Is(err, stores.ErrUnavailable) {
		o.errs[op].Inc()
	}
}

// InsertCode implements stores.CodeStore.
func (o *observed) InsertCode(ctx context.Context, c *stores.Code) error {
	start := time.Now()
	err := o.inner.InsertCode(ctx, c)
	o.done(opInsertCode, start, err)
	return err
}

// ConsumeCode implements stores.CodeStore.
func (o *observed) ConsumeCode(ctx context.Context, key string) (*stores.Code, error) {
	start := time.Now()
	c, err := o.inner.ConsumeCode(ctx, key)
	o.done(opConsumeCode, start, err)
	return c, err
}

// PurgeExpiredCodes implements stores.CodeStore.
func (o *observed) PurgeExpiredCodes(ctx context.Context, batch int) (int64, error) {
	start := time.Now()
	n, err := o.inner.PurgeExpiredCodes(ctx, batch)
	o.done(opPurgeCodes, start, err)
	return n, err
}

// InsertTokens implements stores.TokenStore.
func (o *observed) InsertTokens(ctx context.Context, tokens ...*stores.Token) error {
	start := time.Now()
	err := o.inner.InsertTokens(ctx, tokens...)
	o.done(opInsertTokens, start, err)
	return err
}

// LookupToken implements stores.TokenStore.
func (o *observed) LookupToken(ctx context.Context, kind stores.Kind, key string) (*stores.Token, error) {
	start := time.Now()
	t, err := o.inner.LookupToken(ctx, kind, key)
	o.done(opLookupToken, start, err)
	return t, err
}

// ConsumeRefreshToken implements stores.TokenStore.
func (o *observed) ConsumeRefreshToken(ctx context.Context, key string) (*stores.Token, error) {
	start := time.Now()
	t, err := o.inner.ConsumeRefreshToken(ctx, key)
	o.done(opConsumeRefresh, start, err)
	return t, err
}

// RevokeToken implements stores.TokenStore.
func (o *observed) RevokeToken(ctx context.Context, kind stores.Kind, key string) error {
	start := time.Now()
	err := o.inner.RevokeToken(ctx, kind, key)
	o.done(opRevokeToken, start, err)
	return err
}

// RevokeFamily implements stores.TokenStore.
func (o *observed) RevokeFamily(ctx context.Context, family string, until time.Time) error {
	start := time.Now()
	err := o.inner.RevokeFamily(ctx, family, until)
	o.done(opRevokeFamily, start, err)
	return err
}

// PurgeExpiredTokens implements stores.TokenStore.
func (o *observed) PurgeExpiredTokens(ctx context.Context, batch int) (int64, error) {
	start := time.Now()
	n, err := o.inner.PurgeExpiredTokens(ctx, batch)
	o.done(opPurgeTokens, start, err)
	return n, err
}

// observedInProcess is observed for a store answering from memory.
type observedInProcess struct{ *observed }

// InProcess marks the store as answering from memory (stores.InProcess).
func (observedInProcess) InProcess() {}

// Interface guards
var (
	_ stores.Store     = (*observed)(nil)
	_ stores.Store     = (*observedInProcess)(nil)
	_ stores.InProcess = (*observedInProcess)(nil)
)

// registerValidationCacheMetrics exposes the validation cache's hit and
// miss counts, read at scrape time.
func (a *App) registerValidationCacheMetrics(vc *lookupcache.Cache) error {
	for _, r := range []struct {
		result string
		read   func() float64
	}{
		{"hit", func() float64 { h, _ := vc.Stats(); return float64(h) }},
		{"miss", func() float64 { _, m := vc.Stats(); return float64(m) }},
	} {
		c := prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: metricsNamespace, Subsystem: metricsSubsystem, Name: "validation_cache_requests_total",
			Help:        "Access-token lookups of the guard answered by the validation cache (hit) or the store (miss).",
			ConstLabels: prometheus.Labels{"result": r.result},
		}, r.read)
		if err := a.metrics.registerFunc(c); err != nil {
			return err
		}
	}
	return nil
}

// registerCacheMetrics exposes the size and evictions of the cache stores
// this app uses, each shared cache counted once.
func (a *App) registerCacheMetrics() error {
	if len(a.caches) == 0 {
		return nil
	}
	caches := a.caches
	entries := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: metricsNamespace, Subsystem: metricsSubsystem, Name: "cache_entries",
		Help: "Records held by the cache store: codes, tokens and family indexes, expired ones until purged.",
	}, func() float64 {
		n := 0
		for _, e := range caches {
			n += e.Entries()
		}
		return float64(n)
	})
	sum := func(f func(e *cache.Engine) uint64) func() float64 {
		return func() float64 {
			var n uint64
			for _, e := range caches {
				n += f(e)
			}
			return float64(n)
		}
	}
	evictions := prometheus.NewCounterFunc(prometheus.CounterOpts{
		Namespace: metricsNamespace, Subsystem: metricsSubsystem, Name: "cache_evictions_total",
		Help: "Live records the cache store's bigcache pushed out for lack of room; each was kept in the overflow, none was lost.",
	}, sum((*cache.Engine).Rescued))
	refusals := prometheus.NewCounterFunc(prometheus.CounterOpts{
		Namespace: metricsNamespace, Subsystem: metricsSubsystem, Name: "cache_refusals_total",
		Help: "Issuances and redemptions the cache store refused (503) because it was full.",
	}, sum((*cache.Engine).Refusals))
	overflow := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: metricsNamespace, Subsystem: metricsSubsystem, Name: "cache_overflow_bytes",
		Help: "Bytes of live records the cache store keeps outside bigcache; issuance stops at its budget (max_memory/8).",
	}, func() float64 {
		var n int64
		for _, e := range caches {
			n += e.OverflowBytes()
		}
		return float64(n)
	})
	for _, c := range []prometheus.Collector{entries, evictions, refusals, overflow} {
		if err := a.metrics.registerFunc(c); err != nil {
			return err
		}
	}
	return nil
}

// SingleUse implements stores.SingleUseWrapper: the wrapped store's
// single-use values, if it keeps any.
func (o *observed) SingleUse() (stores.SingleUse, bool) { return stores.SingleUseOf(o.inner) }

// RevokeSubject implements stores.SubjectRevoker when the wrapped store
// does.
func (o *observed) RevokeSubject(ctx context.Context, subject, clientID string, until time.Time) (int64, error) {
	sr, ok := o.inner.(stores.SubjectRevoker)
	if !ok {
		return 0, stores.ErrUnsupported
	}
	return sr.RevokeSubject(ctx, subject, clientID, until)
}

// registerAuthMetrics exposes the brute-force limits' counters, read at
// scrape time.
func (a *App) registerAuthMetrics() error {
	for _, c := range []struct {
		name, help string
		read       func(issuer.AuthStats) uint64
	}{
		{"client_auth_lockouts_total", "Times a client_id or address was locked after repeated failed client authentications.",
			func(s issuer.AuthStats) uint64 { return s.Lockouts }},
		{"client_auth_locked_out_total", "Client authentications refused with 429 because their client_id or address was locked.",
			func(s issuer.AuthStats) uint64 { return s.LockedOut }},
		{"client_auth_busy_total", "Client authentications refused with 503 because no secret verification slot came free.",
			func(s issuer.AuthStats) uint64 { return s.Busy }},
		{"secret_verifications_total", "Client secret bcrypt verifications run.",
			func(s issuer.AuthStats) uint64 { return s.Verifications }},
	} {
		read := c.read
		f := prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: metricsNamespace, Subsystem: metricsSubsystem, Name: c.name, Help: c.help,
		}, func() float64 { return float64(read(a.limits.Stats())) })
		if err := a.metrics.registerFunc(f); err != nil {
			return err
		}
	}
	return nil
}

var _ issuer.AssertionObserver = (*metrics)(nil)
