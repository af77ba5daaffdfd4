// Command upstream is the stand-in API behind the benchmarked Caddy: it
// answers every request with a short 200, so what the benchmark measures is
// Caddy and the guard, not the upstream.
package main

import (
	"flag"
	"log"
	"net/http"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:23090", "listen address")
	flag.Parse()
	body := []byte("ok\n")
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write(body)
	})
	log.Fatal(http.ListenAndServe(*addr, h))
}
