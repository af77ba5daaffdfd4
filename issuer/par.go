package issuer

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/tokengate/caddy-oauth2/dpop"
	"github.com/tokengate/caddy-oauth2/stores"
	"github.com/tokengate/caddy-oauth2/token"
)

// Pushed authorization requests (RFC 9126).
const (
	// PARPath is the pushed authorization request endpoint.
	PARPath = "/oauth2/par"
	// RequestURIPrefix starts every request_uri (RFC 9126 §2.2).
	RequestURIPrefix = "urn:ietf:params:oauth:request_uri:"
	// PARLifetime is how long a request_uri may be used: once, at any
	// gateway sharing the code store.
	PARLifetime = 60 * time.Second
	parPrefix   = "par_"
	// maxPushedBytes bounds the parameters kept for one request_uri.
	maxPushedBytes = 16 << 10
)

// parParams may not repeat in a pushed request (RFC 6749 §3.1).
var parParams = []string{"client_id", "redirect_uri", "response_type", "scope", "state", "code_challenge", "code_challenge_method", "request_uri"}

// clientAuthParams are the client authentication parameters, which are not
// part of the authorization request kept for the request_uri.
var clientAuthParams = []string{"client_secret", "client_assertion", "client_assertion_type"}

// parResponse is the success response of RFC 9126 §2.2.
type parResponse struct {
	RequestURI string `json:"request_uri"`
	ExpiresIn  int64  `json:"expires_in"`
}

// pushed is what the code store keeps for a request_uri: the pushed
// parameters, client_id among them, and the end of their life, which the
// server checks itself so that a store's coarser expiry cannot extend it.
type pushed struct {
	Params    string `json:"params"`
	ExpiresAt int64  `json:"exp"`
}

// servePAR is the pushed authorization request endpoint (RFC 9126 §2): the
// client, authenticated as at the token endpoint, posts the parameters of
// an authorization request; they are checked as the authorization endpoint
// would, kept in the code store under the hash of a random request_uri,
// and the request_uri is answered with 201.
func (s *Server) servePAR(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		methodNotAllowed(w, http.MethodPost)
		return
	}
	form, c, oerr := s.clientForm(w, r, parParams)
	var resp *parResponse
	if oerr == nil {
		resp, oerr = s.push(w, r, c, form)
	}
	o, _ := s.obs.(AssertionObserver)
	if oerr != nil {
		if o != nil {
			o.PARRequest(oerr.Code)
		}
		writeError(w, oerr)
		return
	}
	if o != nil {
		o.PARRequest("created")
	}
	writeJSON(w, http.StatusCreated, resp)
}

// push validates and stores one pushed authorization request.
func (s *Server) push(w http.ResponseWriter, r *http.Request, c *client, form url.Values) (*parResponse, *oauthError) {
	if form.Has("request_uri") {
		return nil, errInvalidRequest("request_uri must not be pushed (RFC 9126 §2.1)")
	}
	if form.Has("request") {
		return nil, &oauthError{http.StatusBadRequest, "request_not_supported", "request objects are not supported"}
	}
	for _, p := range clientAuthParams {
		form.Del(p)
	}
	form.Set("client_id", c.ID)
	if oerr := s.parDPoP(w, r, form); oerr != nil {
		return nil, oerr
	}
	req := &authzRequest{client: c, rawRedirectURI: form.Get("redirect_uri"), params: form}
	switch {
	case req.rawRedirectURI != "":
		if !c.redirectAllowed(req.rawRedirectURI) {
			return nil, errInvalidRequest("redirect_uri is not registered for the client")
		}
	case len(c.RedirectURIs) != 1:
		return nil, errInvalidRequest("redirect_uri is required: the client has several")
	}
	if oerr := s.validateAuthorize(req); oerr != nil {
		return nil, oerr
	}
	enc := form.Encode()
	if len(enc) > maxPushedBytes {
		return nil, errInvalidRequest("the pushed parameters are too large")
	}
	raw, err := token.New(parPrefix)
	if err != nil {
		return nil, errUnavailable
	}
	exp := s.now().Add(PARLifetime)
	value, _ := json.Marshal(pushed{Params: enc, ExpiresAt: exp.Unix()})
	ctx, cancel := s.storeCtx(r)
	err = s.singleUse.PutOnce(ctx, s.parKey(raw), value, exp)
	cancel()
	if err != nil {
		s.storeFailed("put request_uri", stores.Unavailable(err))
		return nil, errUnavailable
	}
	return &parResponse{RequestURI: RequestURIPrefix + raw, ExpiresIn: int64(PARLifetime / time.Second)}, nil
}

// parKey is the code-store key of a request_uri: never the raw value.
func (s *Server) parKey(raw string) string { return s.hasher.Key("par." + raw) }

// pushedParams redeems the request_uri of an authorization request (RFC
// 9126 §4): the parameters pushed under it replace every other parameter
// of the request. It is single-use and bound to the client that pushed it.
// On failure the resource owner is shown why and false returned: without
// the pushed redirect_uri there is nowhere safe to redirect to.
func (s *Server) pushedParams(w http.ResponseWriter, r *http.Request, c *client, params url.Values) (url.Values, bool) {
	if r.Method != http.MethodGet || len(params["request_uri"]) != 1 {
		s.errorPage(w, http.StatusBadRequest, "Invalid request", "The parameter request_uri is repeated or was posted.")
		return nil, false
	}
	rest, ok := strings.CutPrefix(params.Get("request_uri"), RequestURIPrefix)
	if !ok || !token.WellFormed(parPrefix, rest) || s.singleUse == nil {
		s.errorPage(w, http.StatusBadRequest, "Invalid request", "The request_uri was not issued by this server.")
		return nil, false
	}
	ctx, cancel := s.storeCtx(r)
	value, err := s.singleUse.TakeOnce(ctx, s.parKey(rest))
	cancel()
	var p pushed
	var stored url.Values
	if err == nil {
		if json.Unmarshal(value, &p) != nil {
			err = stores.ErrNotFound // not a value push wrote
		} else if stored, err = url.ParseQuery(p.Params); err != nil {
			err = stores.ErrNotFound
		}
	}
	switch {
	case errors.Is(err, stores.ErrConsumed):
		s.log.Warn("request_uri used twice", zap.String("client_id", c.ID))
		fallthrough
	case err == nil && !s.now().Before(time.Unix(p.ExpiresAt, 0)), errors.Is(err, stores.ErrNotFound):
		s.errorPage(w, http.StatusBadRequest, "Request expired",
			"The authorization request has expired or was already used. Go back to the application and start again.")
		return nil, false
	case s.storeFailed("take request_uri", err):
		s.errorPage(w, http.StatusServiceUnavailable, "Temporarily unavailable", "The server cannot read the authorization request now. Try again shortly.")
		return nil, false
	}
	if stored.Get("client_id") != c.ID {
		s.log.Warn("request_uri presented by another client", zap.String("client_id", c.ID), zap.String("pushed_by", stored.Get("client_id")))
		s.errorPage(w, http.StatusBadRequest, "Invalid request", "The request_uri was pushed by another application.")
		return nil, false
	}
	return stored, true
}

// parDPoP binds the pushed request's code to the key of a DPoP proof sent
// to the PAR endpoint (RFC 9449 §10.1), as dpop_jkt would; a dpop_jkt
// pushed beside it must name the same key. A request without a proof is
// left alone: the token request proves the key.
func (s *Server) parDPoP(w http.ResponseWriter, r *http.Request, form url.Values) *oauthError {
	if s.dpop == nil || len(r.Header.Values(dpopHeader)) == 0 {
		return nil
	}
	if n := s.dpop.CurrentNonce(); n != "" {
		w.Header().Set("DPoP-Nonce", n)
	}
	p, de := s.verifyProof(r, PARPath, dpop.Request{Method: http.MethodPost})
	if de != nil {
		return &oauthError{http.StatusBadRequest, de.Code, de.Description}
	}
	if p == nil {
		return errInvalidDPoPProof("the DPoP header holds no proof")
	}
	if jkt := form.Get("dpop_jkt"); jkt != "" && jkt != p.JKT {
		return errInvalidDPoPProof("dpop_jkt does not name the key of the DPoP proof")
	}
	form.Set("dpop_jkt", p.JKT)
	return nil
}

// dpopHeader is the request header of a DPoP proof (RFC 9449 §4.1).
const dpopHeader = "DPoP"
