package jwt

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"
	"go.uber.org/zap"

	"github.com/tokengate/caddy-oauth2/stores"
)

// Defaults of RingConfig.
const (
	DefaultRotation = 720 * time.Hour
	// DefaultRefresh is how often a stored ring reads the store for keys
	// other gateways made, and rotates when the signing key is due.
	DefaultRefresh = time.Minute
	// unknownKidRefresh rate-limits the reads a token with an unknown key
	// id causes: at most one per this long.
	unknownKidRefresh = 5 * time.Second
)

// RingConfig configures a Ring.
type RingConfig struct {
	// Keys are the configured signing keys; the first signs access
	// tokens, the others are published for tokens they signed before a
	// rotation, and the first of each algorithm signs for SignAs. When
	// empty, keys are generated and kept in Store.
	Keys []*Key
	// Generate are the algorithms of the keys generated, rotated and kept
	// in Store, besides the configured keys: ES256 for access tokens when
	// Keys is empty, RS256 for OpenID Connect ID tokens when no configured
	// key is RSA. Default: ES256 when Keys is empty, else none.
	Generate []jose.SignatureAlgorithm
	// Store keeps generated keys, shared by every gateway using it.
	// Required when Keys is empty.
	Store stores.KeyStore
	// Sealer encrypts generated private keys before they reach Store.
	// Required with Store.
	Sealer *Sealer
	// Rotation is how long a generated key signs before a new one is
	// made. Default: 720h.
	Rotation time.Duration
	// TokenLifetime is the longest life of a token the ring signs: a
	// retired key is published that long after it stopped signing.
	TokenLifetime time.Duration
	// Refresh is how often a stored ring rereads the store. Default: 1m.
	Refresh time.Duration
	// Logger receives warnings. Default: none.
	Logger *zap.Logger
	// Now is the clock. Default: time.Now.
	Now func() time.Time
}

// Ring holds the keys JWT access tokens are signed and verified with. It
// is safe for concurrent use; signing and verification read an immutable
// snapshot that Refresh replaces.
type Ring struct {
	cfg  RingConfig
	snap atomic.Pointer[snapshot]

	refreshMu   sync.Mutex
	lastRefresh time.Time

	stopOnce sync.Once
	cancel   context.CancelFunc
	done     chan struct{}
}

type snapshot struct {
	signing *Key
	signer  jose.Signer
	// idSigners sign for SignAs, by algorithm, with typ JWT.
	idSigners map[string]jose.Signer
	keys      map[string]*Key
	jwks      []byte
	// headers are the protected-header segments our signers produce, one
	// per key: a token starting with one claims to be ours.
	headers map[string]bool
}

// ErrNoKey reports a stored ring that has not loaded its keys yet (its
// store could not be read): tokens can be neither signed nor verified.
var ErrNoKey = errors.New("jwt: no signing key loaded yet")

// NewRing checks cfg and returns a Ring. A ring of configured keys is
// ready at once; a stored one after its first Refresh (see Start).
func NewRing(cfg RingConfig) (*Ring, error) {
	if cfg.Rotation <= 0 {
		cfg.Rotation = DefaultRotation
	}
	if cfg.Refresh <= 0 {
		cfg.Refresh = DefaultRefresh
	}
	// Every gateway must read a new key before it signs (see refresh).
	cfg.Refresh = min(cfg.Refresh, cfg.Rotation/4)
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if len(cfg.Keys) == 0 && len(cfg.Generate) == 0 {
		cfg.Generate = []jose.SignatureAlgorithm{jose.ES256}
	}
	for _, alg := range cfg.Generate {
		if alg != jose.ES256 && alg != jose.RS256 {
			return nil, fmt.Errorf("jwt: cannot generate %s keys", alg)
		}
	}
	r := &Ring{cfg: cfg}
	seen := map[string]bool{}
	for _, k := range cfg.Keys {
		if seen[k.ID] {
			return nil, fmt.Errorf("jwt: signing key %s is given twice", k.ID)
		}
		seen[k.ID] = true
	}
	if !r.Stored() {
		snap, err := newSnapshot(cfg.Keys[0], cfg.Keys, nil, nil)
		if err != nil {
			return nil, err
		}
		r.snap.Store(snap)
		return r, nil
	}
	if cfg.Store == nil || cfg.Sealer == nil {
		return nil, errors.New("jwt: without key files, a key store and a sealer are required")
	}
	return r, nil
}

// Stored reports whether some of the ring's keys are generated and kept in
// a store.
func (r *Ring) Stored() bool { return len(r.cfg.Generate) > 0 }

// Algorithms are the algorithms SignAs signs with, RS256 first when the
// ring has it (OpenID Connect Discovery §3 requires it).
func (r *Ring) Algorithms() []string {
	var algs []string
	add := func(a jose.SignatureAlgorithm) {
		if !slices.Contains(algs, string(a)) {
			algs = append(algs, string(a))
		}
	}
	for _, k := range r.cfg.Keys {
		add(k.Alg)
	}
	for _, a := range r.cfg.Generate {
		add(a)
	}
	slices.SortStableFunc(algs, func(a, b string) int {
		switch {
		case a == b:
			return 0
		case a == string(jose.RS256):
			return -1
		case b == string(jose.RS256):
			return 1
		}
		return 0
	})
	return algs
}

// newSnapshot builds a snapshot of the configured and the stored keys:
// signing signs access tokens; the first configured key of each
// algorithm, else generated[alg], signs for SignAs.
func newSnapshot(signing *Key, configured, stored []*Key, generated map[jose.SignatureAlgorithm]*Key) (*snapshot, error) {
	keys := append(slices.Clone(configured), stored...)
	signer, err := jose.NewSigner(
		jose.SigningKey{Algorithm: signing.Alg, Key: jose.JSONWebKey{Key: signing.Private, KeyID: signing.ID}},
		(&jose.SignerOptions{}).WithType(TokenType))
	if err != nil {
		return nil, fmt.Errorf("jwt: signer: %v", err)
	}
	s := &snapshot{signing: signing, signer: signer, keys: make(map[string]*Key, len(keys)), headers: map[string]bool{},
		idSigners: map[string]jose.Signer{}}
	bySigAlg := map[jose.SignatureAlgorithm]*Key{}
	for _, k := range configured {
		if bySigAlg[k.Alg] == nil {
			bySigAlg[k.Alg] = k
		}
	}
	for alg, k := range generated {
		if bySigAlg[alg] == nil {
			bySigAlg[alg] = k
		}
	}
	for alg, k := range bySigAlg {
		sg, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: jose.JSONWebKey{Key: k.Private, KeyID: k.ID}},
			(&jose.SignerOptions{}).WithType("JWT"))
		if err != nil {
			return nil, fmt.Errorf("jwt: signer: %v", err)
		}
		s.idSigners[string(alg)] = sg
	}
	set := jose.JSONWebKeySet{}
	for _, k := range keys {
		s.keys[k.ID] = k
		if k.Private != nil {
			if h, err := headerSegment(k); err == nil {
				s.headers[h] = true
			}
		}
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: k.Public, KeyID: k.ID, Algorithm: string(k.Alg), Use: "sig"})
	}
	if s.jwks, err = json.Marshal(set); err != nil {
		return nil, fmt.Errorf("jwt: jwks: %v", err)
	}
	return s, nil
}

// headerSegment is the first segment of the tokens k signs.
func headerSegment(k *Key) (string, error) {
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: k.Alg, Key: jose.JSONWebKey{Key: k.Private, KeyID: k.ID}},
		(&jose.SignerOptions{}).WithType(TokenType))
	if err != nil {
		return "", err
	}
	jws, err := signer.Sign([]byte("{}"))
	if err != nil {
		return "", err
	}
	compact, err := jws.CompactSerialize()
	if err != nil {
		return "", err
	}
	h, _, _ := strings.Cut(compact, ".")
	return h, nil
}

// OwnsHeader reports, from a map lookup, whether seg is the protected
// header our keys sign with: a cheap way to recognise our own tokens. A
// token it does not know may still be ours (PeekIssuer tells).
func (r *Ring) OwnsHeader(seg string) bool {
	s := r.snap.Load()
	return s != nil && s.headers[seg]
}

// JWKS returns the published keys as a JSON Web Key Set (RFC 7517 §5), nil
// before a stored ring has loaded.
func (r *Ring) JWKS() []byte {
	if s := r.snap.Load(); s != nil {
		return s.jwks
	}
	return nil
}

// SigningKeyID returns the id of the key that signs now, "" before a
// stored ring has loaded.
func (r *Ring) SigningKeyID() string {
	if s := r.snap.Load(); s != nil {
		return s.signing.ID
	}
	return ""
}

// Refresh reads the store's keys, makes a new one when the newest is about
// to reach the rotation period, and replaces the snapshot. The newest key
// that every gateway has had time to read signs (the newest of all when
// none has), so gateways agree after their next refresh; older keys stay
// published until the tokens they signed have expired.
// A ring of configured keys has nothing to refresh.
func (r *Ring) Refresh(ctx context.Context) error {
	if !r.Stored() {
		return nil
	}
	r.refreshMu.Lock()
	defer r.refreshMu.Unlock()
	return r.refresh(ctx)
}

func (r *Ring) refresh(ctx context.Context) error {
	now := r.cfg.Now()
	r.lastRefresh = now
	recs, err := r.cfg.Store.SigningKeys(ctx)
	if err != nil {
		return fmt.Errorf("jwt: reading signing keys: %w", err)
	}
	keys := make([]*Key, 0, len(recs)+1)
	for _, rec := range recs {
		k, err := r.cfg.Sealer.Open(rec.ID, rec.Sealed, rec.CreatedAt, rec.ExpiresAt)
		if err != nil {
			// Another token_secret sealed it: a gateway misconfigured, or
			// one without a token_secret. We can neither sign with it nor
			// publish it; tokens it signs fail here.
			r.cfg.Logger.Warn("ignoring a stored signing key that does not open with this token_secret",
				zap.String("kid", rec.ID), zap.Error(err))
			continue
		}
		keys = append(keys, k)
	}
	// Keys sealed before their dates were authenticated verify the tokens
	// they signed until they expire, but neither sign nor count for the
	// rotation: a new key takes over at once.
	signable := slices.DeleteFunc(slices.Clone(keys), func(k *Key) bool { return k.Legacy })
	newest := func(keys []*Key) *Key {
		if len(keys) == 0 {
			return nil
		}
		return slices.MaxFunc(keys, func(a, b *Key) int {
			if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
				return c
			}
			// The same instant: the smaller id wins, on every gateway.
			if a.ID < b.ID {
				return 1
			}
			return -1
		})
	}
	// Each generated algorithm rotates on its own.
	signers := map[jose.SignatureAlgorithm]*Key{}
	for _, alg := range r.cfg.Generate {
		ofAlg := slices.DeleteFunc(slices.Clone(signable), func(k *Key) bool { return k.Alg != alg })
		// A new key is made a little before the rotation is due and signs
		// only once it is publishDelay old: by then every gateway has
		// reread the store (it does every Refresh) and verifies and
		// publishes it.
		publishDelay := 2 * r.cfg.Refresh
		if n := newest(ofAlg); n == nil || now.Sub(n.CreatedAt) >= r.cfg.Rotation-publishDelay {
			// Whole milliseconds, which every store keeps: the dates are
			// sealed with the key.
			created := now.Truncate(time.Millisecond)
			k, err := GenerateAlg(alg, created)
			if err != nil {
				return fmt.Errorf("jwt: generating a signing key: %v", err)
			}
			expires := created.Add(2*r.cfg.Rotation + r.cfg.TokenLifetime).Truncate(time.Millisecond)
			sealed, err := r.cfg.Sealer.Seal(k, created, expires)
			if err != nil {
				return fmt.Errorf("jwt: sealing a signing key: %v", err)
			}
			// A key signs for one rotation period (and a little more when
			// the store cannot be read to rotate), then is published until
			// the tokens it signed have expired; twice the rotation covers
			// both.
			rec := &stores.SigningKey{ID: k.ID, Sealed: sealed, CreatedAt: created, ExpiresAt: expires}
			if err := r.cfg.Store.InsertSigningKey(ctx, rec); err != nil {
				return fmt.Errorf("jwt: storing a signing key: %w", err)
			}
			r.cfg.Logger.Info("generated a new JWT signing key", zap.String("kid", k.ID), zap.String("alg", string(alg)))
			keys, ofAlg = append(keys, k), append(ofAlg, k)
		}
		// The newest key every gateway has had time to read signs; the
		// newest of all when none is that old (a new store: there is no
		// other).
		var read []*Key
		for _, k := range ofAlg {
			if now.Sub(k.CreatedAt) >= publishDelay {
				read = append(read, k)
			}
		}
		if signers[alg] = newest(read); signers[alg] == nil {
			signers[alg] = newest(ofAlg)
		}
	}
	var signing *Key
	if len(r.cfg.Keys) > 0 {
		signing = r.cfg.Keys[0]
	} else {
		signing = signers[r.cfg.Generate[0]]
	}
	snap, err := newSnapshot(signing, r.cfg.Keys, keys, signers)
	if err != nil {
		return err
	}
	r.snap.Store(snap)
	return nil
}

// Load makes sure a stored ring has keys: when none is loaded yet (a
// request came before Start's first read, or the store was down), it
// reads the store now, at most once per 5s, and waits for a read under
// way. ErrNoKey (or the store's error) means there are still none.
func (r *Ring) Load(ctx context.Context) error {
	if r.snap.Load() != nil || !r.Stored() {
		return nil
	}
	r.refreshMu.Lock()
	defer r.refreshMu.Unlock()
	if r.snap.Load() != nil {
		return nil
	}
	if !r.lastRefresh.IsZero() && r.cfg.Now().Sub(r.lastRefresh) < unknownKidRefresh {
		return ErrNoKey
	}
	return r.refresh(ctx)
}

// Start loads a stored ring's keys and rereads them every Refresh until
// Stop. A store that cannot be read is not an error here: issuing and
// verifying JWTs answers 503 until it can.
func (r *Ring) Start(ctx context.Context) error {
	if !r.Stored() {
		return nil
	}
	if err := r.cfg.Store.StartKeys(ctx); err != nil && !errors.Is(err, stores.ErrUnavailable) {
		return err
	}
	if err := r.Refresh(ctx); err != nil {
		r.cfg.Logger.Error("cannot load the JWT signing keys yet; retrying", zap.Error(err))
	}
	lctx, cancel := context.WithCancel(context.Background())
	r.cancel, r.done = cancel, make(chan struct{})
	go func() {
		defer close(r.done)
		for {
			wait := r.cfg.Refresh
			if r.snap.Load() == nil {
				// Nothing loaded yet: retry sooner, the endpoints answer 503.
				wait = unknownKidRefresh
			}
			t := time.NewTimer(wait)
			select {
			case <-lctx.Done():
				t.Stop()
				return
			case <-t.C:
				ctx, cancel := context.WithTimeout(lctx, 10*time.Second)
				if err := r.Refresh(ctx); err != nil {
					r.cfg.Logger.Error("refreshing the JWT signing keys", zap.Error(err))
				}
				cancel()
			}
		}
	}()
	return nil
}

// Stop ends what Start began and waits for it.
func (r *Ring) Stop() {
	r.stopOnce.Do(func() {
		if r.cancel != nil {
			r.cancel()
			<-r.done
		}
	})
}

// key returns the key of an id. A stored ring that does not know it rereads
// the store, at most once per unknownKidRefresh: another gateway may just
// have rotated.
func (r *Ring) key(ctx context.Context, kid string) (*Key, error) {
	s := r.snap.Load()
	if s != nil {
		if k, ok := s.keys[kid]; ok {
			return k, nil
		}
	}
	if !r.Stored() {
		return nil, errUnknownKey
	}
	r.refreshMu.Lock()
	if r.cfg.Now().Sub(r.lastRefresh) >= unknownKidRefresh {
		if err := r.refresh(ctx); err != nil {
			r.refreshMu.Unlock()
			return nil, err
		}
	}
	r.refreshMu.Unlock()
	if s = r.snap.Load(); s == nil {
		return nil, ErrNoKey
	}
	if k, ok := s.keys[kid]; ok {
		return k, nil
	}
	return nil, errUnknownKey
}
