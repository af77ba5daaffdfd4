// Command mint issues many client_credentials access tokens against a token
// endpoint over a few keep-alive connections, bounded by count and time, and
// prints how many it got and how fast. bench/run.sh uses it to fill the
// cache store before measuring Caddy's resident memory.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	url := flag.String("url", "http://127.0.0.1:23080/oauth2/token", "token endpoint")
	client := flag.String("client", "bench", "client_id")
	secret := flag.String("secret", "bench-secret", "client secret")
	n := flag.Int64("n", 1000000, "tokens to issue")
	conns := flag.Int("c", 16, "concurrent connections")
	limit := flag.Duration("timeout", 10*time.Minute, "give up after this long")
	flag.Parse()

	ctx, cancel := context.WithTimeout(context.Background(), *limit)
	defer cancel()
	tr := &http.Transport{MaxIdleConnsPerHost: *conns, MaxConnsPerHost: *conns}
	hc := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	var next, ok, bad atomic.Int64
	start := time.Now()
	var wg sync.WaitGroup
	for range *conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil && next.Add(1) <= *n {
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, *url,
					strings.NewReader("grant_type=client_credentials&scope=read"))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				req.SetBasicAuth(*client, *secret)
				resp, err := hc.Do(req)
				if err != nil {
					bad.Add(1)
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					ok.Add(1)
				} else {
					bad.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	fmt.Printf("issued %d failed %d in %.1fs (%.0f tokens/s)\n", ok.Load(), bad.Load(), el.Seconds(), float64(ok.Load())/el.Seconds())
	if ok.Load() < *n {
		os.Exit(1)
	}
}
