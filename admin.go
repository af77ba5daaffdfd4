package oauth2

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
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
//	GET  /oauth2/clients   the registered clients, without secrets
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
		{Pattern: "/oauth2/clients", Handler: caddy.AdminHandlerFunc(a.handleClients)},
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

// adminClient is a client as the admin API shows it: never its secret hash.
type adminClient struct {
	ID           string   `json:"id"`
	Type         string   `json:"type"`
	RedirectURIs []string `json:"redirect_uris"`
	GrantTypes   []string `json:"grant_types"`
	Scopes       []string `json:"scopes"`
	SkipConsent  bool     `json:"skip_consent"`
}

func (a *adminAPI) handleClients(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet {
		return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: errors.New("method not allowed: use GET")}
	}
	app, err := runningApp()
	if err != nil {
		return err
	}
	list := make([]adminClient, 0, len(app.Clients))
	for _, c := range app.Clients {
		ac := adminClient{
			ID:           c.ID,
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
		list = append(list, ac)
	}
	slices.SortFunc(list, func(x, y adminClient) int { return strings.Compare(x.ID, y.ID) })
	return writeAdminJSON(w, list)
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
