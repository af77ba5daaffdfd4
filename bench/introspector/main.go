// Command introspector stands in for other authorization servers in
// bench/run.sh's introspection-flood scenario: one RFC 7662 endpoint per
// listen address, each answering every token active:false after a delay,
// and counting the calls and the distinct tokens it was asked about
// (GET /stats: {"calls":n,"distinct":d}).
package main

import (
	"encoding/json"
	"flag"
	"log"
	"net/http"
	"strings"
	"sync"
	"time"
)

type endpoint struct {
	mu    sync.Mutex
	calls int
	seen  map[string]struct{}
	delay time.Duration
}

func (e *endpoint) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/stats" {
		e.mu.Lock()
		defer e.mu.Unlock()
		_ = json.NewEncoder(w).Encode(map[string]int{"calls": e.calls, "distinct": len(e.seen)})
		return
	}
	tok := r.PostFormValue("token")
	e.mu.Lock()
	e.calls++
	e.seen[tok] = struct{}{}
	e.mu.Unlock()
	time.Sleep(e.delay)
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write([]byte(`{"active":false}`))
}

func main() {
	addrs := flag.String("addr", "127.0.0.1:23091,127.0.0.1:23092", "listen addresses, comma separated")
	delay := flag.Duration("delay", 5*time.Millisecond, "time each answer takes")
	flag.Parse()
	errs := make(chan error)
	for _, a := range strings.Split(*addrs, ",") {
		e := &endpoint{seen: map[string]struct{}{}, delay: *delay}
		go func() { errs <- http.ListenAndServe(a, e) }()
	}
	log.Fatal(<-errs)
}
