package oauth2

// Metrics scraped from the admin /metrics of a real Caddy process after
// real traffic, and again after a config reload.

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

const metricsAdmin = "127.0.0.1:2391"

func metricsConfig(extra string) string {
	return `{
	admin ` + metricsAdmin + `
	default_bind 127.0.0.1
	http_port 19390
	https_port 19443
	grace_period 1s
	persist_config off
	oauth2 {
		token_secret "metrics-test-secret-of-at-least-32-bytes"
		purge_every 1s
		validation_cache 10s
		` + extra + `
		client svc {
			secret_hash ` + secretHash + `
			grant_types client_credentials
			scopes read write
		}
	}
}
http://127.0.0.1:19390 {
	oauth2_server
}
http://127.0.0.1:19391 {
	oauth2_guard read
	respond "ok"
}
`
}

// scrape returns the oauth2 metric families from the admin /metrics.
func scrape(t *testing.T) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get("http://" + metricsAdmin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("/metrics: %d %s", resp.StatusCode, body)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("parsing /metrics: %v", err)
	}
	return fams
}

// value is the value of the sample of family name with the given labels
// (name=value pairs), -1 when there is none.
func value(fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	f := fams[name]
	if f == nil {
		return -1
	}
next:
	for _, m := range f.Metric {
		have := map[string]string{}
		for _, l := range m.Label {
			have[l.GetName()] = l.GetValue()
		}
		for i := 0; i+1 < len(labels); i += 2 {
			if have[labels[i]] != labels[i+1] {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		}
	}
	return -1
}

func TestMetricsScrape(t *testing.T) {
	path := filepath.Join(t.TempDir(), "Caddyfile")
	if err := os.WriteFile(path, []byte(metricsConfig("")), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startCaddyProcess(t, path, 19390, 19391)

	cc := &clientcredentials.Config{
		ClientID: "svc", ClientSecret: "s3cret", TokenURL: "http://127.0.0.1:19390/oauth2/token",
		Scopes: []string{"read"}, AuthStyle: oauth2.AuthStyleInHeader,
	}
	var tokens []string
	for range 3 {
		tok, err := cc.Token(context.Background())
		if err != nil {
			t.Fatalf("client_credentials: %v\n%s", err, p.log)
		}
		tokens = append(tokens, tok.AccessToken)
	}
	writeOnly := *cc
	writeOnly.Scopes = []string{"write"}
	wtok, err := writeOnly.Token(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	post := func(user, pass string, form url.Values) int {
		req, _ := http.NewRequest(http.MethodPost, "http://127.0.0.1:19390/oauth2/token", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(user, pass)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := post("svc", "wrong", url.Values{"grant_type": {"client_credentials"}}); code != 401 {
		t.Fatalf("wrong secret: %d", code)
	}
	if code := post("nobody", "x", url.Values{"grant_type": {"client_credentials"}}); code != 401 {
		t.Fatalf("unknown client: %d", code)
	}
	if code := post("svc", "s3cret", url.Values{"grant_type": {"password"}}); code != 400 {
		t.Fatalf("unsupported grant: %d", code)
	}
	guard := func(auth ...string) int {
		req, _ := http.NewRequest(http.MethodGet, "http://127.0.0.1:19391/", nil)
		for _, a := range auth {
			req.Header.Add("Authorization", a)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for i, want := range []struct {
		auth []string
		code int
	}{
		{[]string{"Bearer " + tokens[0]}, 200},
		{[]string{"Bearer " + tokens[0]}, 200}, // from the validation cache
		{[]string{"Bearer " + tokens[1]}, 200},
		{nil, 401},
		{[]string{"Bearer cat_nosuchtoken0000000000000000000000000000000"}, 401},
		{[]string{"Bearer " + wtok.AccessToken}, 403},
		{[]string{"Bearer a", "Bearer b"}, 400},
	} {
		if code := guard(want.auth...); code != want.code {
			t.Fatalf("guard request %d: %d, want %d", i, code, want.code)
		}
	}
	time.Sleep(1500 * time.Millisecond) // at least one purge run

	fams := scrape(t)
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"caddy_oauth2_tokens_issued_total", []string{"grant_type", "client_credentials", "client_id", "svc"}, 4},
		{"caddy_oauth2_token_errors_total", []string{"error", "invalid_client"}, 2},
		{"caddy_oauth2_token_errors_total", []string{"error", "unsupported_grant_type"}, 1},
		{"caddy_oauth2_client_auth_failures_total", []string{"client_id", "svc"}, 1},
		{"caddy_oauth2_client_auth_failures_total", []string{"client_id", ""}, 1},
		{"caddy_oauth2_guard_requests_total", []string{"result", "allowed"}, 3},
		{"caddy_oauth2_guard_requests_total", []string{"result", "no_token"}, 1},
		{"caddy_oauth2_guard_requests_total", []string{"result", "invalid_token"}, 1},
		{"caddy_oauth2_guard_requests_total", []string{"result", "insufficient_scope"}, 1},
		{"caddy_oauth2_guard_requests_total", []string{"result", "bad_request"}, 1},
		{"caddy_oauth2_guard_requests_total", []string{"result", "unavailable"}, 0},
		{"caddy_oauth2_validation_cache_requests_total", []string{"result", "hit"}, 1},
		{"caddy_oauth2_validation_cache_requests_total", []string{"result", "miss"}, 3},
		{"caddy_oauth2_store_operation_duration_seconds", []string{"store", "access_token_store", "op", "insert_tokens"}, 4},
		{"caddy_oauth2_store_errors_total", []string{"store", "access_token_store", "op", "lookup_token"}, 0},
		{"caddy_oauth2_cache_entries", nil, 4},
		{"caddy_oauth2_cache_evictions_total", nil, 0},
	} {
		if got := value(fams, c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	if n := value(fams, "caddy_oauth2_secret_verifications_total"); n < 2 {
		t.Errorf("secret verifications %v, want ≥ 2 (the first right secret and the wrong one)", n)
	}
	for _, name := range []string{"caddy_oauth2_client_auth_lockouts_total", "caddy_oauth2_client_auth_locked_out_total", "caddy_oauth2_client_auth_busy_total"} {
		if got := value(fams, name); got != 0 {
			t.Errorf("%s = %v, want 0", name, got)
		}
	}
	if runs := value(fams, "caddy_oauth2_purge_runs_total"); runs < 1 {
		t.Errorf("purge runs %v, want ≥ 1", runs)
	}
	if n := value(fams, "caddy_oauth2_purge_duration_seconds"); n < 1 {
		t.Errorf("purge duration samples %v, want ≥ 1", n)
	}
	if value(fams, "caddy_oauth2_purged_total", "kind", "token") < 0 {
		t.Error("no caddy_oauth2_purged_total{kind=token}")
	}
	// The code store's single-use values (PAR, assertion jti) are purged
	// too, found through the metrics wrapper.
	if value(fams, "caddy_oauth2_purged_total", "kind", "single_use") < 0 {
		t.Error("no caddy_oauth2_purged_total{kind=single_use}: the purge skips the single-use values")
	}
	// The example Grafana dashboard queries only metrics that exist.
	dash, err := os.ReadFile("examples/grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range regexp.MustCompile(`caddy_oauth2_[a-z_]+`).FindAllString(string(dash), -1) {
		if fams[strings.TrimSuffix(name, "_bucket")] == nil {
			t.Errorf("examples/grafana-dashboard.json queries %s, which Caddy does not export", name)
		}
	}
	if fams["caddy_config_last_reload_successful"] == nil {
		t.Error("Caddy's own metrics are missing: not Caddy's registry?")
	}
	for name, f := range fams {
		for _, m := range f.Metric {
			for _, l := range m.Label {
				for _, tok := range append(tokens, wtok.AccessToken) {
					if strings.Contains(l.GetValue(), tok[4:12]) {
						t.Fatalf("a token appears in label %s of %s", l.GetName(), name)
					}
				}
			}
		}
	}

	// A reload registers everything again on the new config's registry:
	// no duplicate-registration error, and the metrics are still there.
	adapted := metricsConfig("access_token_lifetime 120s")
	req, _ := http.NewRequest(http.MethodPost, "http://"+metricsAdmin+"/load", strings.NewReader(adapted))
	req.Header.Set("Content-Type", "text/caddyfile")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("reload: %d %s\n%s", resp.StatusCode, body, p.log)
	}
	if code := guard("Bearer " + tokens[2]); code != 200 {
		t.Fatalf("guard after reload: %d", code)
	}
	fams = scrape(t)
	if got := value(fams, "caddy_oauth2_guard_requests_total", "result", "allowed"); got < 1 {
		t.Errorf("after reload: guard allowed = %v, want ≥ 1", got)
	}
	if strings.Contains(p.log.String(), "duplicate metrics collector registration") {
		t.Error("duplicate registration on reload")
	}
}
