package verify

import (
	"fmt"
	"hash/maphash"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// topicKind says what verify does with a topic's records.
type topicKind uint8

const (
	kindIntents topicKind = iota
	kindControl
	kindDataplane
	kindGate
	kindArtifacts
	kindDLQ
)

// events reports whether the topic holds the processors' events
// (spine.control, spine.dataplane, gate.*), written in transactions.
func (k topicKind) events() bool { return k == kindControl || k == kindDataplane || k == kindGate }

type topicInfo struct {
	name    string // with the prefix
	short   string // without
	kind    topicKind
	index   uint8 // in verifier.topics
	parts   []*partState
	records int64
	// tapped: the replay's read delivers this topic's records (tap.go).
	tapped bool
}

// loc is where a record is, kept without formatting it.
type loc struct {
	topic uint8
	part  int32
	off   int64
}

func (v *verifier) where(l loc) string {
	return fmt.Sprintf("%s/%d@%d", v.topics[l.topic].short, l.part, l.off)
}

func locOf(ti *topicInfo, r *kgo.Record) loc {
	return loc{topic: ti.index, part: r.Partition, off: r.Offset}
}

type partState struct {
	from, end int64
	done      bool
	// next is the offset after the last record read (0 before any).
	next int64
	// dlq holds the dead letters of this partition's records, by offset.
	dlq map[int64]*deadLetter
	// seen is set once a record of the partition was read.
	seen bool
	// pending holds transactional records by producer id until their
	// transaction's marker says commit (apply them) or abort (report them).
	pending map[int64][]*kgo.Record
}

// reading reports whether the read of the partition is planned and not
// yet done.
func (st *partState) reading() bool { return st != nil && !st.done && st.end > st.from }

type deadLetter struct {
	where   string
	trace   string
	key     []byte
	value   []byte
	matched bool
}

// traceState is the compact state of one run: no pointers, so a million
// of them cost the collector nothing.
type traceState struct {
	key       [16]byte // the trace id, when it is 32 hex digits
	name      int32    // index in verifier.names otherwise; -1 when key holds it
	state     uint8    // interned state
	outcome   uint8    // interned outcome state
	terminals uint8
	flags     uint8
	lastMs    int64 // the last state change
	startedMs int64
	intentMs  int64
	intentP   int32
	intentOff int64
}

const (
	fReceived uint8 = 1 << iota
	fIntent
	fPartial
	fControl
)

// gateAgg gathers the gate events and the verdict on one artifact (one
// trace and parent span).
type gateAgg struct {
	trace          uint32
	passed, failed uint16
	verdicts       uint8
	vPassed        bool
	vMeasured      float64
	vThreshold     float64
	where          loc
}

type delivered struct {
	fp    uint64
	trace uint32
	where loc
}

type verifier struct {
	// mu is held while records are applied: by read, and by a tap's
	// goroutine (tap.go).
	mu      sync.Mutex
	cfg     Config
	rep     *Report
	seed    maphash.Seed
	now     time.Time
	partial bool // the read starts after some run's beginning
	// horizonMs is the time of the first record read of a control
	// partition that retention truncated, the latest of them: an intent
	// before it may have lost its run's records (see finish).
	horizonMs int64

	dlq     *topicInfo
	scanned []*topicInfo
	byName  map[string]*topicInfo
	topics  []*topicInfo

	traces    []traceState
	byHex     map[[16]byte]uint32
	byName2   map[string]uint32
	names     []string
	ids       fpSet
	artifacts fpSet
	delivered []delivered
	gates     map[uint64]uint32
	gateAggs  []gateAgg

	states  []string
	stateIx map[string]uint8
	events  []string
	eventIx map[string]uint8
	legal   map[[3]uint8]bool

	abortedTraces map[string]bool

	layouts map[uint32]bool
	env     envelope
	stored  int
}

func newVerifier(cfg Config) *verifier {
	v := &verifier{
		cfg:     cfg,
		rep:     &Report{Records: map[string]int64{}, Outcomes: map[string]int{}, Counts: map[Kind]int{}, Anomalies: []Anomaly{}, Isolation: "read_committed"},
		seed:    maphash.MakeSeed(),
		byName:  map[string]*topicInfo{},
		byHex:   map[[16]byte]uint32{},
		byName2: map[string]uint32{},
		gates:   map[uint64]uint32{},
		states:  []string{""},
		stateIx: map[string]uint8{"": 0},
		eventIx: map[string]uint8{},
		legal:   map[[3]uint8]bool{},
		layouts: map[uint32]bool{},
	}
	if cfg.ReadUncommitted {
		v.rep.Isolation = "read_uncommitted"
	}
	v.now = cfg.Now()
	if !cfg.Until.IsZero() && cfg.Until.Before(v.now) {
		v.now = cfg.Until
	}
	v.ids.init(1 << 16)
	v.artifacts.init(1 << 12)
	return v
}

func (v *verifier) anomaly(k Kind, trace, where, format string, args ...any) {
	v.rep.Counts[k]++
	if v.stored >= v.cfg.MaxAnomalies {
		return
	}
	v.stored++
	v.rep.Anomalies = append(v.rep.Anomalies, Anomaly{Kind: k, TraceID: trace, Where: where, Detail: fmt.Sprintf(format, args...)})
}
