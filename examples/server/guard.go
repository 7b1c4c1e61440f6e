package main

import (
	"errors"
	"log"
	"mime"
	"net/http"
	"time"
)

// What every request goes through, as a server on the open network needs:
// the HTTP server's timeouts cut a client that sends its request slowly or
// holds an idle connection; every response carries headers that keep the
// page from being framed, sniffed or fed scripts from elsewhere; a POST
// must say it is JSON, so that a cross-site form cannot send one; and a
// body is read up to maxBodyBytes.

// Timeouts of the HTTP server. There is no server-wide WriteTimeout: it
// would cut a streamed answer, which may last minutes. Instead each
// response gets DefaultWriteTimeout to be written, and a streamed answer
// that long for each of its events, so a reader that stops reading is cut
// (see eventWriter) while a slow answer is not.
const (
	DefaultReadHeaderTimeout = 10 * time.Second // to send the request line and headers
	DefaultReadTimeout       = 30 * time.Second // to send the whole request, body included
	DefaultWriteTimeout      = 30 * time.Second // to take a response, or one event of an answer
	DefaultIdleTimeout       = 2 * time.Minute  // between requests on a kept-alive connection
	DefaultMaxHeaderBytes    = 64 << 10         // a user header and some cookies; Go's default is 1 MiB
)

// timeouts are the HTTP server's; tests shorten them.
type timeouts struct {
	readHeader, read, idle time.Duration
}

var defaultTimeouts = timeouts{readHeader: DefaultReadHeaderTimeout, read: DefaultReadTimeout, idle: DefaultIdleTimeout}

// newHTTPServer returns the HTTP server of h.
func newHTTPServer(h http.Handler, logger *log.Logger, t timeouts) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: t.readHeader,
		ReadTimeout:       t.read,
		IdleTimeout:       t.idle,
		MaxHeaderBytes:    DefaultMaxHeaderBytes,
		ErrorLog:          logger,
	}
}

// contentSecurityPolicy lets the page load its own script and style and
// call its own API, and nothing else: no inline script or style (the page
// has none), no other origin, no framing.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; " +
	"base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// securityHeaders are set on every response.
var securityHeaders = [][2]string{
	{"Content-Security-Policy", contentSecurityPolicy},
	{"X-Frame-Options", "DENY"},
	{"X-Content-Type-Options", "nosniff"},
	{"Referrer-Policy", "no-referrer"}, // the page's URL names the user
}

// guard sets the security headers and the write deadline of a response,
// refuses a POST that is not JSON with 415, and bounds the body; then it
// passes the request on to next.
//
// A browser sends a cross-site request with Content-Type application/json
// only after a CORS preflight, which this server does not answer, so the
// JSON-only rule keeps other sites from posting as a user (a form can send
// only text/plain, urlencoded or multipart bodies).
func (s *server) guard(w http.ResponseWriter, r *http.Request, next http.Handler) {
	h := w.Header()
	for _, kv := range securityHeaders {
		h.Set(kv[0], kv[1])
	}
	if s.writeTimeout > 0 {
		// Not supported by every ResponseWriter (a test recorder); the
		// server's own are.
		_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(s.writeTimeout))
	}
	if r.Method == http.MethodPost {
		if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
			s.fail(w, http.StatusUnsupportedMediaType, errors.New("a POST takes a JSON body: send Content-Type: application/json"))
			return
		}
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxBodyBytes)
	next.ServeHTTP(w, r)
}
