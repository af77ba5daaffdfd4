package fetch

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestRedirects(t *testing.T) {
	var other atomic.Int32
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { other.Add(1) }))
	defer elsewhere.Close()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ok":
			w.Write([]byte("ok"))
		case "/hop1":
			http.Redirect(w, r, "/hop2", http.StatusFound)
		case "/hop2":
			http.Redirect(w, r, "/ok", http.StatusFound)
		case "/away":
			http.Redirect(w, r, elsewhere.URL+"/x", http.StatusTemporaryRedirect)
		}
	}))
	defer srv.Close()
	ctx := context.Background()
	for name, tc := range map[string]struct {
		max  int
		path string
		ok   bool
	}{
		"no redirect allowed": {0, "/hop2", false},
		"within the limit":    {2, "/hop1", true},
		"over the limit":      {1, "/hop1", false},
		"to another origin":   {3, "/away", false},
		"no redirect at all":  {0, "/ok", true},
	} {
		_, b, err := New(Options{MaxRedirects: tc.max}).Get(ctx, srv.URL+tc.path, "*/*")
		if ok := err == nil && string(b) == "ok"; ok != tc.ok {
			t.Errorf("%s: %q %v", name, b, err)
		}
	}
	// A POST never follows, whatever the limit.
	_, _, err := New(Options{MaxRedirects: 3}).PostForm(ctx, srv.URL+"/away", url.Values{"token": {"t"}}, "id", "secret", "*/*")
	if !errors.Is(err, ErrRedirect) {
		t.Errorf("POST redirected: %v", err)
	}
	if n := other.Load(); n != 0 {
		t.Fatalf("the other origin received %d requests", n)
	}
}

func TestLimits(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			time.Sleep(time.Second)
		}
		w.Write([]byte(strings.Repeat("x", 2000)))
	}))
	defer srv.Close()
	c := New(Options{MaxBody: 1000, Timeout: 200 * time.Millisecond})
	if _, _, err := c.Get(context.Background(), srv.URL, "*/*"); !errors.Is(err, ErrTooLarge) {
		t.Errorf("2000 bytes with MaxBody 1000: %v", err)
	}
	start := time.Now()
	if _, _, err := c.Get(context.Background(), srv.URL+"/slow", "*/*"); err == nil || time.Since(start) > 600*time.Millisecond {
		t.Errorf("slow answer: %v after %v", err, time.Since(start))
	}
}

func TestRefusePrivate(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	ctx := context.Background()
	if _, _, err := New(Options{}).Get(ctx, srv.URL, "*/*"); err != nil {
		t.Fatalf("off by default: %v", err)
	}
	for _, u := range []string{srv.URL, strings.Replace(srv.URL, "127.0.0.1", "localhost", 1)} {
		if _, _, err := New(Options{RefusePrivate: true}).Get(ctx, u, "*/*"); !errors.Is(err, ErrAddress) {
			t.Errorf("%s with RefusePrivate: %v", u, err)
		}
	}
	for a, want := range map[string]bool{
		"8.8.8.8": true, "2606:4700::1111": true, "10.1.2.3": false, "192.168.0.1": false, "172.16.0.1": false,
		"169.254.169.254": false, "100.64.0.1": false, "::1": false, "fc00::1": false, "fe80::1": false,
		"0.0.0.0": false, "::ffff:127.0.0.1": false, "224.0.0.1": false,
	} {
		if got := Public(netip.MustParseAddr(a)); got != want {
			t.Errorf("Public(%s) = %v", a, got)
		}
	}
}
