package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"syscall"
	"time"
)

// HTTPServer serves one handler on one address with bounded shutdown.
type HTTPServer struct {
	Name            string // for logs and errors, e.g. "api", "registry"
	Addr            string
	Handler         http.Handler
	ShutdownTimeout time.Duration
	Log             *slog.Logger

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
	srv := &http.Server{Handler: s.Handler, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(s.ln) }()
	if s.Log != nil {
		s.Log.Info("http server listening", "server", s.Name, "addr", s.BoundAddr())
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
