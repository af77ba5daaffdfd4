package oauth2

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/tokengate/caddy-oauth2/issuer"
	"github.com/tokengate/caddy-oauth2/stores"
)

func init() {
	caddy.RegisterModule(adminAPI{})
}

// adminAPI serves the `oauth2` app's operator routes on Caddy's admin
// endpoint:
//
//	POST /oauth2/revoke    {"subject": "alice"} and/or {"client_id": "x"}:
//	                       revoke every code, access and refresh token of
//	                       that user and/or client; answers {"revoked": n}
//	POST /oauth2/purge     remove expired codes and tokens now; answers
//	                       {"codes": n, "tokens": m}
//	GET  /oauth2/clients   every client, configured ("source": "config")
//	                       or registered ("admin", "dynamic"), without
//	                       secrets
//	POST /oauth2/clients   register a client from RFC 7591 metadata; the
//	                       answer shows its secret, this once
//	GET, PUT, DELETE /oauth2/clients/<id>
//	                       read, replace or delete a registered client
//	                       (deleting revokes its codes and tokens)
//	POST /oauth2/clients/<id>/secret  {"grace": "24h"}: a new secret; the
//	                       old one works for the grace period
//
// Like every admin route, they are reachable only where the admin endpoint
// listens (localhost:2019 by default).
type adminAPI struct{}

// CaddyModule returns the Caddy module information.
func (adminAPI) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "admin.api.oauth2", New: func() caddy.Module { return new(adminAPI) }}
}

// Routes returns the admin routes.
func (a *adminAPI) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{
		{Pattern: "/oauth2/revoke", Handler: caddy.AdminHandlerFunc(a.handleRevoke)},
		{Pattern: "/oauth2/purge", Handler: caddy.AdminHandlerFunc(a.handlePurge)},
		{Pattern: "/oauth2/clients", Handler: written(a.handleClients)},
		{Pattern: "/oauth2/clients/", Handler: written(a.handleClient)},
	}
}

// adminPurgeTimeout bounds a purge run from the admin API; a backlog larger
// than one run removes is left to the next run.
const adminPurgeTimeout = 5 * time.Minute

func (a *adminAPI) handlePurge(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodPost {
		return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: errors.New("method not allowed: use POST")}
	}
	app, err := runningApp()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(r.Context(), adminPurgeTimeout)
	defer cancel()
	codes, tokens, err := app.purger.RunOnce(ctx)
	if err != nil {
		return caddy.APIError{HTTPStatus: http.StatusServiceUnavailable, Err: fmt.Errorf("purge: %v", err)}
	}
	return writeAdminJSON(w, map[string]int64{"codes": codes, "tokens": tokens})
}

// revokeRequest is the body of POST /oauth2/revoke.
type revokeRequest struct {
	Subject  string `json:"subject"`
	ClientID string `json:"client_id"`
}

func (a *adminAPI) handleRevoke(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodPost {
		return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: errors.New("method not allowed: use POST")}
	}
	var req revokeRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: fmt.Errorf("body: want {\"subject\": ..., \"client_id\": ...}: %v", err)}
	}
	if req.Subject == "" && req.ClientID == "" {
		return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: errors.New("give a subject, a client_id or both")}
	}
	app, err := runningApp()
	if err != nil {
		return err
	}
	n, err := app.revokeSubject(r.Context(), req.Subject, req.ClientID)
	if errors.Is(err, stores.ErrUnsupported) {
		return caddy.APIError{HTTPStatus: http.StatusNotImplemented, Err: err}
	}
	if err != nil {
		return caddy.APIError{HTTPStatus: http.StatusServiceUnavailable, Err: fmt.Errorf("revoke: %v (revoked %d before the failure)", err, n)}
	}
	app.logger.Info("revoked through the admin API",
		zap.String("subject", req.Subject), zap.String("client_id", req.ClientID), zap.Int64("revoked", n))
	return writeAdminJSON(w, map[string]int64{"revoked": n})
}

// adminClient is a configured client as the admin API shows it: never its
// secret hash.
type adminClient struct {
	ID           string   `json:"id"`
	Source       string   `json:"source"`
	Type         string   `json:"type"`
	RedirectURIs []string `json:"redirect_uris"`
	GrantTypes   []string `json:"grant_types"`
	Scopes       []string `json:"scopes"`
	SkipConsent  bool     `json:"skip_consent"`
}

// sourceConfig marks the clients of the configuration in the admin API;
// the others say how they were registered (stores.RegisteredBy*).
const sourceConfig = "config"

func configuredClient(c *Client) adminClient {
	ac := adminClient{
		ID:           c.ID,
		Source:       sourceConfig,
		Type:         "public",
		RedirectURIs: orEmpty(c.RedirectURIs),
		GrantTypes:   orEmpty(c.GrantTypes),
		Scopes:       orEmpty(c.Scopes),
		SkipConsent:  c.SkipConsent,
	}
	if c.SecretHash != "" {
		ac.Type = "confidential"
	}
	if len(c.GrantTypes) == 0 {
		ac.GrantTypes = issuer.DefaultGrantTypes(c.SecretHash == "")
	}
	return ac
}

// registeredClient is a runtime client as the admin API shows it: its RFC
// 7591 metadata, the operator's fields, and where it came from, in the
// shape of adminClient where they share fields.
func registeredClient(rc *stores.RegisteredClient) map[string]any {
	v := issuer.ClientView(rc, true)
	v["id"] = rc.ID
	v["source"] = rc.RegisteredBy
	v["type"] = "public"
	if len(rc.SecretHash) > 0 {
		v["type"] = "confidential"
	}
	v["scopes"] = orEmpty(rc.Scopes)
	return v
}

// handleClients serves GET (list both kinds) and POST (create) on
// /oauth2/clients.
func (a *adminAPI) handleClients(w http.ResponseWriter, r *http.Request) error {
	app, err := runningApp()
	if err != nil {
		return err
	}
	switch r.Method {
	case http.MethodGet:
	case http.MethodPost:
		return a.createClient(w, r, app)
	default:
		return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: errors.New("method not allowed: use GET or POST")}
	}
	list := make([]any, 0, len(app.Clients))
	ids := make([]string, 0, len(app.Clients))
	byID := map[string]any{}
	for _, c := range app.Clients {
		ids = append(ids, c.ID)
		byID[c.ID] = configuredClient(c)
	}
	if app.registry != nil {
		for _, rc := range app.registry.List() {
			if _, dup := byID[rc.ID]; !dup {
				ids = append(ids, rc.ID)
				byID[rc.ID] = registeredClient(rc)
			}
		}
	}
	slices.Sort(ids)
	for _, id := range ids {
		list = append(list, byID[id])
	}
	return writeAdminJSON(w, list)
}

// registryOf returns the running app's client registry, 501 when its
// store keeps no clients.
func registryOf(app *App) (*issuer.Registry, error) {
	if app.registry == nil {
		return nil, caddy.APIError{HTTPStatus: http.StatusNotImplemented,
			Err: errors.New("the access_token_store cannot keep registered clients")}
	}
	return app.registry, nil
}

func (a *adminAPI) createClient(w http.ResponseWriter, r *http.Request, app *App) error {
	reg, err := registryOf(app)
	if err != nil {
		return err
	}
	m, err := readClientMetadata(w, r)
	if err != nil {
		return err
	}
	if reg.Configured(m.ClientID) {
		return writeMetadataError(w, &issuer.MetadataError{Code: issuer.ErrCodeInvalidClientMetadata, Field: "client_id",
			Err: errors.New("a client with this client_id is defined in the configuration")})
	}
	rc, secret, err := reg.NewRecord(m, stores.RegisteredByAdmin, 0)
	if err == nil {
		ctx, cancel := context.WithTimeout(r.Context(), time.Duration(app.StoreTimeout))
		err = reg.Create(ctx, rc)
		cancel()
	}
	if err != nil {
		return registryAPIError(w, err)
	}
	app.logger.Info("client registered through the admin API", zap.String("client_id", rc.ID))
	v := registeredClient(rc)
	if secret != "" {
		v["client_secret"] = secret // shown this once, never again
	}
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	return json.NewEncoder(w).Encode(v)
}

// handleClient serves GET, PUT and DELETE on /oauth2/clients/<id> and
// POST on /oauth2/clients/<id>/secret.
func (a *adminAPI) handleClient(w http.ResponseWriter, r *http.Request) error {
	app, err := runningApp()
	if err != nil {
		return err
	}
	rest := strings.TrimPrefix(r.URL.EscapedPath(), "/oauth2/clients/")
	rawID, action, _ := strings.Cut(rest, "/")
	id, err := url.PathUnescape(rawID)
	if err != nil || id == "" || action != "" && action != "secret" {
		return caddy.APIError{HTTPStatus: http.StatusNotFound, Err: errors.New("want /oauth2/clients/<id> or /oauth2/clients/<id>/secret")}
	}
	if action == "secret" {
		if r.Method != http.MethodPost {
			return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: errors.New("method not allowed: use POST")}
		}
		return a.rotateSecret(w, r, app, id)
	}
	for _, c := range app.Clients {
		if c.ID != id {
			continue
		}
		if r.Method != http.MethodGet {
			return caddy.APIError{HTTPStatus: http.StatusConflict, Err: issuer.ErrConfiguredClient}
		}
		return writeAdminJSON(w, configuredClient(c))
	}
	reg, err := registryOf(app)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(r.Context(), time.Duration(app.StoreTimeout))
	defer cancel()
	switch r.Method {
	case http.MethodGet:
		rc, ok := reg.Get(id)
		if !ok {
			return caddy.APIError{HTTPStatus: http.StatusNotFound, Err: fmt.Errorf("no client %q", id)}
		}
		return writeAdminJSON(w, registeredClient(rc))
	case http.MethodPut:
		rc, ok := reg.Get(id)
		if !ok {
			return caddy.APIError{HTTPStatus: http.StatusNotFound, Err: fmt.Errorf("no client %q", id)}
		}
		m, err := readClientMetadata(w, r)
		if err != nil {
			return err
		}
		next, err := reg.Apply(rc, m)
		if err == nil {
			err = reg.Update(ctx, next)
		}
		if err != nil {
			return registryAPIError(w, err)
		}
		app.logger.Info("client updated through the admin API", zap.String("client_id", id))
		return writeAdminJSON(w, registeredClient(next))
	case http.MethodDelete:
		if err := reg.Delete(ctx, id); err != nil {
			return registryAPIError(w, err)
		}
		app.logger.Info("client deleted through the admin API", zap.String("client_id", id))
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: errors.New("method not allowed: use GET, PUT or DELETE")}
}

// rotateRequest is the body of POST /oauth2/clients/<id>/secret.
type rotateRequest struct {
	// Grace is how long the old secret keeps working, a Go duration such
	// as "24h"; default 0, not at all.
	Grace string `json:"grace"`
}

func (a *adminAPI) rotateSecret(w http.ResponseWriter, r *http.Request, app *App, id string) error {
	reg, err := registryOf(app)
	if err != nil {
		return err
	}
	var req rotateRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil && !errors.Is(err, io.EOF) {
		return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: fmt.Errorf("body: want {\"grace\": \"24h\"} or nothing: %v", err)}
	}
	var grace time.Duration
	if req.Grace != "" {
		if grace, err = caddy.ParseDuration(req.Grace); err != nil || grace < 0 {
			return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: fmt.Errorf("grace %q: want a duration such as 24h", req.Grace)}
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), time.Duration(app.StoreTimeout))
	defer cancel()
	secret, err := reg.RotateSecret(ctx, id, grace)
	if err != nil {
		return registryAPIError(w, err)
	}
	app.logger.Info("client secret rotated through the admin API", zap.String("client_id", id), zap.Duration("grace", grace))
	out := map[string]any{"client_id": id, "client_secret": secret}
	if grace > 0 {
		out["previous_secret_expires_at"] = time.Now().Add(grace).UTC().Format(time.RFC3339)
	}
	w.Header().Set("Cache-Control", "no-store")
	return writeAdminJSON(w, out)
}

// readClientMetadata reads an RFC 7591 metadata body with the operator's
// fields.
func readClientMetadata(w http.ResponseWriter, r *http.Request) (*issuer.ClientMetadata, error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 64<<10))
	if err != nil {
		return nil, caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: fmt.Errorf("body: %v", err)}
	}
	m, me := issuer.ParseClientMetadata(body, true)
	if me != nil {
		return nil, writeMetadataError(w, me)
	}
	return m, nil
}

// errWritten stops the admin handler after a response was written.
var errWritten = errors.New("response written")

// written is an admin handler that may have written its error response
// itself (errWritten).
func written(h caddy.AdminHandlerFunc) caddy.AdminHandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		if err := h(w, r); err != errWritten {
			return err
		}
		return nil
	}
}

// registryAPIError answers a failed registry call: RFC 7591 §3.2.2 errors
// as 400, the rest as admin API errors.
func registryAPIError(w http.ResponseWriter, err error) error {
	var me *issuer.MetadataError
	switch {
	case errors.As(err, &me):
		return writeMetadataError(w, me)
	case errors.Is(err, stores.ErrExists):
		return caddy.APIError{HTTPStatus: http.StatusConflict, Err: errors.New("a client with this client_id is registered already")}
	case errors.Is(err, issuer.ErrConfiguredClient):
		return caddy.APIError{HTTPStatus: http.StatusConflict, Err: err}
	case errors.Is(err, stores.ErrNotFound):
		return caddy.APIError{HTTPStatus: http.StatusNotFound, Err: errors.New("no such registered client")}
	case errors.Is(err, issuer.ErrTooManyClients):
		return caddy.APIError{HTTPStatus: http.StatusInsufficientStorage, Err: err}
	}
	return caddy.APIError{HTTPStatus: http.StatusServiceUnavailable, Err: err}
}

// writeMetadataError writes RFC 7591 §3.2.2's 400 and returns errWritten.
func writeMetadataError(w http.ResponseWriter, me *issuer.MetadataError) error {
	desc := me.Err.Error()
	if me.Field != "" {
		desc = me.Field + ": " + desc
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusBadRequest)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": me.Code, "error_description": issuer.SafeDescription(desc), "field": me.Field})
	return errWritten
}

// runningApp returns the `oauth2` app of the running configuration. It is
// looked up per request because the admin endpoint outlives config reloads.
func runningApp() (*App, error) {
	app, err := caddy.ActiveContext().AppIfConfigured("oauth2")
	if err != nil || app == nil {
		return nil, caddy.APIError{HTTPStatus: http.StatusNotFound, Err: errors.New("the oauth2 app is not configured")}
	}
	a, ok := app.(*App)
	if !ok || a.purger == nil {
		return nil, caddy.APIError{HTTPStatus: http.StatusNotFound, Err: errors.New("the oauth2 app is not running")}
	}
	return a, nil
}

func writeAdminJSON(w http.ResponseWriter, v any) error {
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(v)
}

func orEmpty(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// Interface guards
var _ caddy.AdminRouter = (*adminAPI)(nil)
