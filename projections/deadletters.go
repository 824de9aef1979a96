package projections

import (
	"context"
	"encoding/hex"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/spinerun/spine/pipeline"
)

// Bounds of the dead letters the dashboard keeps and shows.
const (
	deadLettersKept = 100  // latest dead letters kept
	deadLetterBytes = 4096 // bytes of a value shown, as text and hex
)

// DeadLetters tails the dead-letter topic (pipeline.Layout.DLQ) from its
// start, read_committed, and keeps the latest dead letters and the count
// of every code, for the dashboard and GET /v1/dead-letters. It is safe for
// concurrent use: Run writes under its lock, Snapshot reads under it.
type DeadLetters struct {
	kafka []kgo.Opt
	topic pipeline.Topic
	log   *slog.Logger

	mu     sync.Mutex
	latest []DeadLetterView
	codes  map[string]int64
	total  int64
	bad    int64
}

// DeadLetterView is one dead letter as the dashboard shows it: where the
// record came from, why it was refused, and its original bytes as text
// (invalid UTF-8 and control characters shown as '.') and as hex.
type DeadLetterView struct {
	// DLQOffset and DLQPartition are where the dead letter is on the DLQ.
	DLQPartition int32     `json:"dlq_partition"`
	DLQOffset    int64     `json:"dlq_offset"`
	At           time.Time `json:"at"`
	Code         string    `json:"code"`
	Reason       string    `json:"reason"`
	ErrorType    string    `json:"error_type,omitempty"`
	Processor    string    `json:"processor,omitempty"`
	Group        string    `json:"group,omitempty"`
	// Topic, Partition and Offset are the original record's.
	Topic     string    `json:"source_topic"`
	Partition int32     `json:"source_partition"`
	Offset    int64     `json:"source_offset"`
	Produced  time.Time `json:"source_timestamp,omitzero"`
	// Key is the original key as text (a trace id, usually).
	Key string `json:"key"`
	// Size is the original value's length; Text and Hex show its first
	// 4096 bytes, Truncated says whether there were more.
	Size      int    `json:"size"`
	Text      string `json:"text"`
	Hex       string `json:"hex"`
	Truncated bool   `json:"truncated,omitempty"`
}

// DeadLettersSnapshot is the body of GET /v1/dead-letters.
type DeadLettersSnapshot struct {
	// Total counts the dead letters read; Codes counts them by code;
	// Unreadable counts records on the DLQ without dead-letter headers.
	Total      int64            `json:"total"`
	Codes      map[string]int64 `json:"codes"`
	Unreadable int64            `json:"unreadable,omitempty"`
	// Latest are the most recent, newest first (at most 100).
	Latest []DeadLetterView `json:"latest"`
}

// NewDeadLetters returns a tail of layout's DLQ through clients built from
// kafka (seed brokers, SASL, TLS). It does no I/O.
func NewDeadLetters(kafka []kgo.Opt, layout pipeline.Layout, log *slog.Logger) *DeadLetters {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &DeadLetters{kafka: kafka, topic: layout.DLQ(), log: log.With("component", "dead-letters"), codes: map[string]int64{}}
}

// Run tails the DLQ until ctx ends.
func (d *DeadLetters) Run(ctx context.Context) error {
	cl, err := kgo.NewClient(append(slices.Clone(d.kafka),
		kgo.ConsumeTopics(string(d.topic)),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.FetchMaxWait(250*time.Millisecond),
	)...)
	if err != nil {
		return fmt.Errorf("dead letters: client: %w", err)
	}
	defer cl.Close()
	for {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil || fs.IsClientClosed() {
			return nil
		}
		fs.EachError(func(t string, p int32, err error) {
			d.log.Warn("fetch error", "topic", t, "partition", p, "err", err)
		})
		fs.EachRecord(d.add)
	}
}

func (d *DeadLetters) add(r *kgo.Record) {
	dl, err := pipeline.ParseDeadLetter(r)
	d.mu.Lock()
	defer d.mu.Unlock()
	if err != nil {
		d.bad++
		return
	}
	v := DeadLetterView{DLQPartition: r.Partition, DLQOffset: r.Offset, At: r.Timestamp.UTC(), Code: dl.Code, Reason: dl.Message, ErrorType: dl.ErrorType,
		Processor: dl.Processor, Group: dl.Group, Topic: string(dl.Topic), Partition: dl.Partition, Offset: dl.Offset, Key: printable(dl.Key), Size: len(dl.Value)}
	if !dl.Timestamp.IsZero() {
		v.Produced = dl.Timestamp.UTC()
	}
	b := dl.Value
	if len(b) > deadLetterBytes {
		b, v.Truncated = b[:deadLetterBytes], true
	}
	v.Text, v.Hex = printable(b), hex.EncodeToString(b)
	d.total++
	d.codes[v.Code]++
	d.latest = appendRing(d.latest, v, deadLettersKept)
}

// printable shows b as text: valid UTF-8 as is, control characters (but
// newline and tab) and invalid bytes as '.'.
func printable(b []byte) string {
	var s strings.Builder
	for len(b) > 0 {
		r, n := utf8.DecodeRune(b)
		switch {
		case r == utf8.RuneError && n <= 1:
			s.WriteByte('.')
		case r == '\n' || r == '\t':
			s.WriteRune(r)
		case unicode.IsControl(r):
			s.WriteByte('.')
		default:
			s.WriteRune(r)
		}
		b = b[n:]
	}
	return s.String()
}

// Snapshot returns the counts and the latest dead letters, newest first.
func (d *DeadLetters) Snapshot() DeadLettersSnapshot {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := DeadLettersSnapshot{Total: d.total, Codes: maps.Clone(d.codes), Unreadable: d.bad, Latest: make([]DeadLetterView, 0, min(len(d.latest), 20))}
	for i := len(d.latest) - 1; i >= 0; i-- {
		s.Latest = append(s.Latest, d.latest[i])
	}
	return s
}
