package pipeline

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// EmbeddedConfig configures the in-process Kafka-protocol broker.
type EmbeddedConfig struct {
	// DataDir persists the cluster; empty keeps it in memory (tests).
	DataDir string
	// Brokers is the number of in-process brokers (default 1).
	Brokers int
	// Port is the first port, on Host; 0 picks free ports.
	Port int
	// Host is the interface the brokers bind (SPINE_BIND_HOST). Default
	// 127.0.0.1: only this machine can connect.
	Host string
	// AdvertisedHost is the host the brokers tell clients to connect to
	// (SPINE_KAFKA_ADVERTISED_HOST). Default: Host, or the machine's host
	// name when Host is every interface (0.0.0.0 or ::).
	AdvertisedHost string
	// TLS, when set, makes the brokers speak TLS only.
	TLS *tls.Config
	// SASL, when set, makes the brokers require SASL; ACLs apply to every
	// user but the superuser.
	SASL *EmbeddedSASL
	// CleanerIntervalMs is how often compaction and retention run
	// (log.cleaner.backoff.ms); kfake's default is an hour. Default 30000.
	// Without TLS and SASL, a pass runs only when something was written
	// since the last one; a quiet broker only applies retention, every
	// RetentionCheckInterval (see Embedded.clean). With them, a pass runs
	// on every tick.
	CleanerIntervalMs int
	// RetentionCheckInterval is how often a broker nothing is written to
	// still applies time-based retention (Kafka's
	// log.retention.check.interval.ms). Default 5 minutes.
	RetentionCheckInterval time.Duration
	// Logger receives kfake's warnings; nil discards them.
	Logger *slog.Logger
}

// Embedded is a kfake cluster: a real Kafka-protocol broker in this process,
// persisted to a data directory. It is safe for concurrent use.
type Embedded struct {
	cfg EmbeddedConfig

	mu      sync.Mutex
	cluster *kfake.Cluster
	// stopClean ends the cleaner; cleaned is closed when it has.
	stopClean                 context.CancelFunc
	cleaned                   chan struct{}
	passes, skipped, retained atomic.Int64
}

// NewEmbedded returns an embedded broker; Start binds its ports.
func NewEmbedded(cfg EmbeddedConfig) *Embedded {
	if cfg.Brokers < 1 {
		cfg.Brokers = 1
	}
	if cfg.CleanerIntervalMs <= 0 {
		cfg.CleanerIntervalMs = 30000
	}
	if cfg.RetentionCheckInterval <= 0 {
		cfg.RetentionCheckInterval = 5 * time.Minute
	}
	return &Embedded{cfg: cfg}
}

// ErrPortInUse is returned by Start when a broker port is taken.
var ErrPortInUse = errors.New("port in use")

// Start binds the brokers' ports and loads any persisted state. A port that
// is in use fails with an error naming it and wrapping ErrPortInUse.
func (e *Embedded) Start() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.cluster != nil {
		return errors.New("embedded broker already started")
	}
	// The cleaner is Spine's when it can connect as a plain client;
	// kfake's own ticker then never fires.
	own := e.cfg.TLS == nil && e.cfg.SASL == nil
	backoff := e.cfg.CleanerIntervalMs
	if own {
		backoff = int((100 * 365 * 24 * time.Hour).Milliseconds())
	}
	opts := []kfake.Opt{
		kfake.ClusterID("spine-embedded"),
		kfake.BrokerConfigs(map[string]string{
			"log.cleaner.backoff.ms":     fmt.Sprint(backoff),
			"transaction.max.timeout.ms": "900000",
		}),
		kfake.ListenFn(e.listen),
	}
	if e.cfg.TLS != nil {
		opts = append(opts, kfake.TLS(e.cfg.TLS))
	}
	if e.cfg.SASL != nil {
		opts = append(opts, e.cfg.SASL.opts()...)
	}
	if e.cfg.Port > 0 {
		ports := make([]int, e.cfg.Brokers)
		for i := range ports {
			ports[i] = e.cfg.Port + i
		}
		opts = append(opts, kfake.Ports(ports...))
	} else {
		opts = append(opts, kfake.NumBrokers(e.cfg.Brokers))
	}
	if e.cfg.DataDir != "" {
		dir := filepath.Join(e.cfg.DataDir, "kafka")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("create data directory %s: %w", dir, err)
		}
		opts = append(opts, kfake.DataDir(dir))
	}
	if e.cfg.Logger != nil {
		opts = append(opts, kfake.WithLogger(kfakeLogger{e.cfg.Logger}))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return fmt.Errorf("start embedded Kafka broker: %w", err)
	}
	e.cluster = c
	if own {
		ctx, stop := context.WithCancel(context.Background())
		e.stopClean, e.cleaned = stop, make(chan struct{})
		go e.clean(ctx, c, c.ListenAddrs(), e.cleaned)
	}
	return nil
}

// clean runs compaction and retention every CleanerIntervalMs, but only
// when a partition's end offset moved since the last pass. kfake compacts
// every compacted partition whole on its one request loop, and nothing
// else is served meanwhile: with a few million cells held that is
// seconds. A quiet broker (a stack between loads, one being verified or
// replayed) skips the passes that would find nothing new; a written one is
// cleaned as before. Time still passes on a quiet broker, so every
// RetentionCheckInterval it applies retention alone (kfake reads only its
// batches' metadata for that); tombstones past delete.retention.ms wait
// for the next pass, after the next write.
func (e *Embedded) clean(ctx context.Context, c *kfake.Cluster, addrs []string, done chan<- struct{}) {
	defer close(done)
	// Metadata as fresh as each tick: listing every topic's end offsets
	// names the topics of the client's metadata, and a topic created since
	// must count.
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.MetadataMinAge(10*time.Millisecond))
	if err != nil {
		return // cannot be: no option to refuse
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	t := time.NewTicker(time.Duration(e.cfg.CleanerIntervalMs) * time.Millisecond)
	defer t.Stop()
	last, lastRetention := int64(-1), time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		ends, err := adm.ListEndOffsets(lctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		written := int64(-1) // unknown: clean
		if err == nil {
			written = 0
			ends.Each(func(o kadm.ListedOffset) {
				if o.Err == nil && o.Offset > 0 {
					written += o.Offset
				}
			})
		}
		if written >= 0 && written == last {
			e.skipped.Add(1)
			if time.Since(lastRetention) >= e.cfg.RetentionCheckInterval {
				c.ApplyRetention()
				e.retained.Add(1)
				lastRetention = time.Now()
			}
			continue
		}
		start := time.Now()
		c.Compact()
		e.passes.Add(1)
		last, lastRetention = written, time.Now()
		if took := lastRetention.Sub(start); took >= time.Second && e.cfg.Logger != nil {
			// The broker answered no request meanwhile.
			e.cfg.Logger.Info("embedded broker: compaction and retention pass", "took", took.Round(time.Millisecond))
		}
	}
}

// CleanerPasses returns how many compaction passes Spine's cleaner ran, how
// many it skipped, nothing having been written, and how many of those it
// applied retention alone (all 0 with TLS or SASL, where kfake's own
// ticker runs the passes).
func (e *Embedded) CleanerPasses() (ran, skipped, retained int64) {
	return e.passes.Load(), e.skipped.Load(), e.retained.Load()
}

// listen binds kfake's address (always 127.0.0.1:port) on the configured
// host instead, and advertises the configured host.
func (e *Embedded) listen(network, addr string) (net.Listener, error) {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	host := e.cfg.Host
	if host == "" {
		host = "127.0.0.1"
	}
	addr = net.JoinHostPort(host, port)
	l, err := net.Listen(network, addr)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return nil, fmt.Errorf("embedded Kafka broker: %s: %w (stop whatever listens there or set SPINE_KAFKA_PORT)", addr, ErrPortInUse)
		}
		return nil, fmt.Errorf("embedded Kafka broker: listen %s: %w", addr, err)
	}
	adv := e.cfg.AdvertisedHost
	if adv == "" {
		if ip := net.ParseIP(host); ip == nil || !ip.IsUnspecified() {
			return l, nil
		}
		if adv, err = os.Hostname(); err != nil || adv == "" {
			adv = "localhost"
		}
	}
	return advertised{Listener: l, host: adv}, nil
}

// advertised is a listener whose Addr names the host clients should dial
// (kfake advertises its listener's address in metadata).
type advertised struct {
	net.Listener
	host string
}

func (a advertised) Addr() net.Addr { return advertisedAddr{a.Listener.Addr(), a.host} }

type advertisedAddr struct {
	net.Addr
	host string
}

func (a advertisedAddr) String() string {
	_, port, _ := net.SplitHostPort(a.Addr.String())
	return net.JoinHostPort(a.host, port)
}

// Addrs returns the brokers' host:port addresses; nil before Start.
func (e *Embedded) Addrs() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.cluster == nil {
		return nil
	}
	return e.cluster.ListenAddrs()
}

// Compact runs compaction and retention now.
func (e *Embedded) Compact() {
	e.mu.Lock()
	c := e.cluster
	e.mu.Unlock()
	if c != nil {
		c.Compact()
	}
}

// Close stops the brokers and flushes the data directory. It is idempotent.
func (e *Embedded) Close() {
	e.mu.Lock()
	c := e.cluster
	e.cluster = nil
	stop, cleaned := e.stopClean, e.cleaned
	e.stopClean = nil
	e.mu.Unlock()
	if stop != nil {
		stop()
		<-cleaned
	}
	if c != nil {
		c.Close()
	}
}

type kfakeLogger struct{ l *slog.Logger }

func (k kfakeLogger) Logf(level kfake.LogLevel, msg string, args ...any) {
	var lvl slog.Level
	switch level {
	case kfake.LogLevelError:
		lvl = slog.LevelError
	case kfake.LogLevelWarn:
		lvl = slog.LevelWarn
	case kfake.LogLevelInfo:
		lvl = slog.LevelInfo
	default:
		lvl = slog.LevelDebug
	}
	// kfake reports every transaction that takes more than a few
	// milliseconds to end as a warning; on a busy machine that is routine.
	if lvl == slog.LevelWarn && strings.HasPrefix(msg, "txn: EndTxn slow") {
		lvl = slog.LevelDebug
	}
	if !k.l.Enabled(context.Background(), lvl) {
		return
	}
	k.l.Log(context.Background(), lvl, fmt.Sprintf(msg, args...), "component", "kfake")
}
