package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/spinerun/spine/cmd/spine/stack"
	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/schemas"
)

// The CLI tools (produce, consume, trace, schemas, flags, replay) talk to
// the cluster KAFKA_BROKERS names or, when it is empty, to the embedded
// broker a running `spine up` serves on localhost:SPINE_KAFKA_PORT; and to
// SCHEMA_REGISTRY_URL or, when empty, the registry `spine up` serves on
// SPINE_REGISTRY_ADDR.

// cliBrokers returns the seed brokers the CLI tools use.
func cliBrokers(cfg *stack.Config) []string {
	if !cfg.Embedded() {
		return cfg.Brokers
	}
	host := cfg.KafkaAdvertisedHost
	if host == "" {
		host = cfg.BindHost
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	bs := make([]string, cfg.EmbeddedBrokers)
	for i := range bs {
		bs[i] = net.JoinHostPort(host, strconv.Itoa(cfg.KafkaPort+i))
	}
	return bs
}

// cliRegistryURL returns the registry URL the CLI tools use.
func cliRegistryURL(cfg *stack.Config) string {
	if cfg.RegistryURL != "" {
		return cfg.RegistryURL
	}
	return localURL(cfg, cfg.RegistryAddr)
}

// localURL turns a listen address such as ":8081" into the URL a local
// client reaches it at: http://127.0.0.1:8081 by default (SPINE_BIND_HOST),
// https with SPINE_TLS_CERT.
func localURL(cfg *stack.Config, addr string) string {
	scheme := "http://"
	if cfg.ServerTLSCert != "" {
		scheme = "https://"
	}
	return scheme + hostport(cfg.ListenAddr(addr))
}

// cliKafkaOpts returns client options for the CLI tools.
func cliKafkaOpts(cfg *stack.Config) ([]kgo.Opt, error) {
	return cfg.KafkaOpts(cliBrokers(cfg)...)
}

// newSRClient returns a registry client on url with the configured basic
// auth and a bounded timeout.
func newSRClient(cfg *stack.Config, url string) (*sr.Client, error) {
	return stack.RegistryClient(&cfg.Config, url)
}

// cliCodec returns the wire codec the CLI tools use.
func cliCodec(cfg *stack.Config) (*pipeline.SchemaCodec, error) {
	cl, err := newSRClient(cfg, cliRegistryURL(cfg))
	if err != nil {
		return nil, err
	}
	serde, err := schemas.NewSerde(cl)
	if err != nil {
		return nil, err
	}
	return pipeline.NewSchemaCodec(serde, pipeline.NewLayout(&cfg.Config)), nil
}

// reachable fails fast, with a hint, when the registry does not answer.
func checkRegistry(ctx context.Context, cfg *stack.Config) error {
	url := cliRegistryURL(cfg)
	cl, err := newSRClient(cfg, url)
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := cl.Subjects(cctx); err != nil {
		return fmt.Errorf("is the schema registry at %s reachable? (start the stack with `spine up` or set SCHEMA_REGISTRY_URL): %w", url, err)
	}
	return nil
}

// unreachable adds to a deadline error that Kafka may not be running.
func unreachable(err error, cfg *stack.Config) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w (is Kafka at %v reachable? start the stack with `spine up` or set KAFKA_BROKERS)", err, cliBrokers(cfg))
	}
	return err
}
