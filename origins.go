package oauth2

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// Without an `issuer`, the issuer identifier of an oauth2_server handler is
// derived from the configuration of the site that serves it, never from the
// Host header, which the client chooses (RFC 9207 §2.4): one candidate per
// host of the site's host matcher and port its server listens on, the
// scheme https when the server has TLS connection policies. A request gets
// the candidate whose host and port match the request's host and the port it
// arrived on, else the first. A site without a host matcher (`:8080`) gets
// its listen address when that is a loopback address; a wildcard or
// placeholder host, a port range, or a catch-all site listening beyond
// loopback have no single issuer, and Caddy refuses to start.

// siteOrigin is one candidate issuer of a site.
type siteOrigin struct {
	host   string // lower-case hostname, without brackets
	port   string
	issuer string
}

// siteOrigins finds the server and the host matchers that lead to h.
func siteOrigins(app *caddyhttp.App, h caddyhttp.MiddlewareHandler) ([]siteOrigin, error) {
	names := make([]string, 0, len(app.Servers))
	for name := range app.Servers {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		srv := app.Servers[name]
		hosts, found := findHandler(srv.Routes, h, nil)
		if !found && srv.Errors != nil {
			hosts, found = findHandler(srv.Errors.Routes, h, nil)
		}
		if found {
			return originsOf(name, srv, hosts)
		}
	}
	return nil, errors.New("oauth2_server is not in any route of the http servers, so its site is unknown")
}

// findHandler reports whether target is in routes, and the hosts of the
// innermost host matcher on the way to it.
func findHandler(routes caddyhttp.RouteList, target caddyhttp.MiddlewareHandler, hosts []string) ([]string, bool) {
	for _, route := range routes {
		here := hosts
		if hs := routeHosts(route); hs != nil {
			here = hs
		}
		for _, h := range route.Handlers {
			if h == target {
				return here, true
			}
			if sub, ok := h.(*caddyhttp.Subroute); ok {
				if found, ok := findHandler(sub.Routes, target, here); ok {
					return found, true
				}
			}
		}
	}
	return nil, false
}

// routeHosts returns the hosts a route's matcher sets restrict it to, nil
// when some set does not restrict the host.
func routeHosts(route caddyhttp.Route) []string {
	var hosts []string
	for _, set := range route.MatcherSets {
		var inSet []string
		for _, m := range set {
			switch mh := m.(type) {
			case *caddyhttp.MatchHost:
				inSet = append(inSet, *mh...)
			case caddyhttp.MatchHost:
				inSet = append(inSet, mh...)
			}
		}
		if inSet == nil {
			return nil
		}
		hosts = append(hosts, inSet...)
	}
	return hosts
}

// originsOf builds the candidates of a site on server name.
func originsOf(name string, srv *caddyhttp.Server, hosts []string) ([]siteOrigin, error) {
	scheme := "http"
	if len(srv.TLSConnPolicies) > 0 {
		scheme = "https"
	}
	var ports, binds []string
	for _, l := range srv.Listen {
		na, err := caddy.ParseNetworkAddress(l)
		if err != nil {
			return nil, fmt.Errorf("server %s: listen address %q: %v", name, l, err)
		}
		if na.IsUnixNetwork() || na.IsFdNetwork() {
			return nil, fmt.Errorf("server %s listens on %q, which has no port for an issuer URL", name, l)
		}
		if na.PortRangeSize() != 1 {
			return nil, fmt.Errorf("server %s listens on the port range %q", name, l)
		}
		port := strconv.FormatUint(uint64(na.StartPort), 10)
		if !slices.Contains(ports, port) {
			ports = append(ports, port)
		}
		binds = append(binds, na.Host)
	}
	if len(ports) == 0 {
		return nil, fmt.Errorf("server %s has no listen address", name)
	}
	if len(hosts) == 0 {
		// A catch-all site: only a loopback-only listener names its host.
		for _, b := range binds {
			ip := net.ParseIP(b)
			if b != "localhost" && (ip == nil || !ip.IsLoopback()) {
				return nil, fmt.Errorf("the site of oauth2_server on server %s has no host name and listens beyond loopback (%s)",
					name, strings.Join(srv.Listen, ", "))
			}
			if !slices.Contains(hosts, b) {
				hosts = append(hosts, b)
			}
		}
	}
	var out []siteOrigin
	for _, h := range hosts {
		if strings.ContainsAny(h, "*{}") {
			return nil, fmt.Errorf("the site of oauth2_server on server %s has the wildcard or placeholder host %q", name, h)
		}
		h = strings.ToLower(strings.Trim(h, "[]"))
		for _, p := range ports {
			iss := scheme + "://" + net.JoinHostPort(h, p)
			if scheme == "http" && p == "80" || scheme == "https" && p == "443" {
				iss = scheme + "://" + h
				if strings.Contains(h, ":") {
					iss = scheme + "://[" + h + "]"
				}
			}
			out = append(out, siteOrigin{host: h, port: p, issuer: iss})
		}
	}
	return out, nil
}

// pickOrigin chooses the candidate for a request: the one with the request's
// hostname and local port, else the first with its hostname, else the first.
// The Host header only selects among configured values.
func pickOrigin(origins []siteOrigin, r *http.Request) string {
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.ToLower(strings.TrimSuffix(strings.Trim(host, "[]"), "."))
	var port string
	if a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		_, port, _ = net.SplitHostPort(a.String())
	}
	best := -1
	for i, o := range origins {
		if o.host != host {
			continue
		}
		if o.port == port {
			return o.issuer
		}
		if best < 0 {
			best = i
		}
	}
	if best < 0 {
		best = 0
	}
	return origins[best].issuer
}
