package pipeline

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"syscall"
	"time"
)

// Defaults of HTTPServer's timeouts, applied when a field is zero.
const (
	DefaultHTTPReadTimeout  = 30 * time.Second
	DefaultHTTPWriteTimeout = 90 * time.Second
	DefaultHTTPIdleTimeout  = 120 * time.Second
)

// HTTPServer serves one handler on one address with bounded shutdown,
// read, write and idle timeouts always, and https when given a
// certificate. Config.HTTPServer builds one from the environment.
type HTTPServer struct {
	Name            string // for logs and errors, e.g. "api", "registry"
	Addr            string
	Handler         http.Handler
	ShutdownTimeout time.Duration
	Log             *slog.Logger
	// ReadTimeout, WriteTimeout and IdleTimeout bound a request's reading,
	// its answer, and an idle keep-alive connection; zero takes the
	// DefaultHTTP* value.
	ReadTimeout, WriteTimeout, IdleTimeout time.Duration
	// TLSCertFile and TLSKeyFile, when set, make it serve https (TLS 1.2
	// at least) with this PEM certificate and key.
	TLSCertFile, TLSKeyFile string

	ln net.Listener
}

// Listen binds the address. A port in use fails with an error naming it.
func (s *HTTPServer) Listen() error {
	ln, err := net.Listen("tcp", s.Addr)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return fmt.Errorf("%s HTTP server: %s: %w (stop whatever listens there or move it with its SPINE_*_ADDR variable)", s.Name, s.Addr, ErrPortInUse)
		}
		return fmt.Errorf("%s HTTP server: listen %s: %w", s.Name, s.Addr, err)
	}
	s.ln = ln
	return nil
}

// BoundAddr is the address actually bound (useful with port 0); empty before
// Listen.
func (s *HTTPServer) BoundAddr() string {
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// Run serves until ctx ends, then shuts down within ShutdownTimeout. It calls
// Listen first if needed.
func (s *HTTPServer) Run(ctx context.Context) error {
	if s.ln == nil {
		if err := s.Listen(); err != nil {
			return err
		}
	}
	srv := &http.Server{
		Handler:           s.Handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       orDefault(s.ReadTimeout, DefaultHTTPReadTimeout),
		WriteTimeout:      orDefault(s.WriteTimeout, DefaultHTTPWriteTimeout),
		IdleTimeout:       orDefault(s.IdleTimeout, DefaultHTTPIdleTimeout),
		ErrorLog:          slog.NewLogLogger(s.logHandler(), slog.LevelDebug),
	}
	ln := s.ln
	if s.TLSCertFile != "" {
		cert, err := tls.LoadX509KeyPair(s.TLSCertFile, s.TLSKeyFile)
		if err != nil {
			_ = s.ln.Close()
			return fmt.Errorf("%s HTTP server: load SPINE_TLS_CERT/SPINE_TLS_KEY: %w", s.Name, err)
		}
		srv.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2", "http/1.1"}}
		ln = tls.NewListener(ln, srv.TLSConfig)
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	if s.Log != nil {
		s.Log.Info("http server listening", "server", s.Name, "addr", s.BoundAddr(), "scheme", s.Scheme())
	}
	select {
	case err := <-errc:
		return fmt.Errorf("%s HTTP server: %w", s.Name, err)
	case <-ctx.Done():
	}
	to := s.ShutdownTimeout
	if to <= 0 {
		to = 5 * time.Second
	}
	sctx, cancel := context.WithTimeout(context.Background(), to)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		_ = srv.Close()
	}
	<-errc
	return nil
}

// Scheme is "https" when the server has a certificate, else "http".
func (s *HTTPServer) Scheme() string {
	if s.TLSCertFile != "" {
		return "https"
	}
	return "http"
}

// logHandler is where net/http's own messages (TLS handshake errors,
// panics in handlers) go: the server's logger, or nowhere.
func (s *HTTPServer) logHandler() slog.Handler {
	if s.Log == nil {
		return slog.DiscardHandler
	}
	return s.Log.With("server", s.Name).Handler()
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}
