package schemas

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/sr"
	"golang.org/x/sync/singleflight"
)

// DefaultMaxRecordBytes bounds a record value (header included), every
// string or bytes length inside it, and the number of map entries it may
// hold, unless WithMaxRecordBytes says otherwise: room for an input of
// MaxInputBytes and its envelope.
const DefaultMaxRecordBytes = 2*MaxInputBytes + 64<<10

// unknownIDTTL is how long an id the registry answered 404 for is
// remembered, so a stream of poison records with the same bogus id costs
// one registry call, not one per record.
const (
	unknownIDTTL     = 30 * time.Second
	maxUnknownCached = 1024
)

// ValueSubject is the TopicNameStrategy subject of a topic's record values:
// "<topic>-value".
func ValueSubject(topic string) string { return topic + "-value" }

// ContractOf returns the contract of a canonical value: *Intent (or Intent)
// is ContractIntent, *RuntimeEvent (or RuntimeEvent) is
// ContractRuntimeEvent.
func ContractOf(value any) (Contract, bool) {
	switch value.(type) {
	case *Intent, Intent:
		return ContractIntent, true
	case *RuntimeEvent, RuntimeEvent:
		return ContractRuntimeEvent, true
	}
	return "", false
}

// Serde encodes canonical Go values into the Confluent wire format (magic
// byte 0, 4-byte big-endian schema id, Avro body) and decodes them back.
//
// Encoding writes the asked contract version's schema; its id under the
// subject is looked up (or registered, with WithAutoRegister) once per
// (subject, contract, version) and cached. Decoding reads the id from the
// header, fetches the writer schema once per id (concurrent misses for an
// id share one registry call), and resolves it against the reader schema —
// the contract version the Go types mirror, V2 unless WithReaderVersion says
// otherwise — so a V2 reader fills V2 fields of V1 records with their
// defaults and a V1 reader reads V2 records without misreading a byte. In
// steady state neither direction calls the registry.
//
// Decode never panics on bad bytes and allocates at most the bounds of
// WithMaxRecordBytes: poison input returns a *DecodeError with a stable
// code; a registry outage returns a wrapped error without a code.
//
// A Serde is safe for concurrent use and starts no goroutines. Its methods
// call the registry only on a cache miss, with the caller's ctx; callers that
// miss on the same key at once share one call (and, if the first caller's ctx
// ends, its transient error). Locks: the id and writer caches are sync.Maps
// written once per key; unknownM guards the short memory of unknown ids and
// is never held across I/O.
type Serde struct {
	cl       *sr.Client
	log      *slog.Logger
	api      avro.API
	hdr      sr.ConfluentHeader
	reader   ContractVersion
	register bool
	max      int
	now      func() time.Time

	// Immutable after NewSerde.
	enc   map[contractKey]avro.Schema
	known map[[32]byte]contractKey
	names map[string]Contract
	// fastEvent holds the contract versions whose RuntimeEvent schema
	// appendEventBody writes (see eventBodyFingerprints).
	fastEvent [V2 + 1]bool

	ids      sync.Map // encKey → int
	writers  sync.Map // int → *writerSchema
	flight   singleflight.Group
	unknownM sync.Mutex
	unknown  map[int]time.Time // id → until when it is known unknown

	readers sync.Pool // *avro.Reader
	writerP sync.Pool // *avro.Writer
}

type contractKey struct {
	c Contract
	v ContractVersion
}

type encKey struct {
	subject string
	contractKey
}

// writerSchema is what one schema id decodes with. A permanent problem with
// the id (not a contract, not resolvable) is cached as err: ids never change.
type writerSchema struct {
	contract Contract
	version  ContractVersion
	writer   avro.Schema // scanned against
	resolved avro.Schema // decoded with
	err      *DecodeError
	// fast is the version of today's RuntimeEvent schema the writer is,
	// when readEventBody decodes it for a V2 reader; 0 otherwise.
	fast ContractVersion
}

// Option configures a Serde.
type Option func(*Serde)

// WithLogger sets the logger; the default discards.
func WithLogger(l *slog.Logger) Option { return func(s *Serde) { s.log = l } }

// WithReaderVersion sets the contract version decoded values are read as
// (default V2, the version the Go types mirror). A V1 reader leaves every
// V2-only field at its Go zero value.
func WithReaderVersion(v ContractVersion) Option { return func(s *Serde) { s.reader = v } }

// WithAutoRegister makes Encode register the contract version under the
// subject (POST /subjects/{subject}/versions) on first use instead of
// looking it up (POST /subjects/{subject}). The registry's compatibility
// rule still applies.
func WithAutoRegister() Option { return func(s *Serde) { s.register = true } }

// WithMaxRecordBytes bounds a record value, each length and the number of
// collection entries inside it (default DefaultMaxRecordBytes).
func WithMaxRecordBytes(n int) Option { return func(s *Serde) { s.max = n } }

// WithClock sets the clock Validate measures "in the future" against, and
// that ages the memory of unknown schema ids (default time.Now).
func WithClock(now func() time.Time) Option { return func(s *Serde) { s.now = now } }

// NewSerde returns a Serde on the registry client cl. It parses the
// compiled-in contracts and does no I/O.
func NewSerde(cl *sr.Client, opts ...Option) (*Serde, error) {
	s := &Serde{
		cl:      cl,
		log:     slog.New(slog.DiscardHandler),
		reader:  V2,
		max:     DefaultMaxRecordBytes,
		now:     time.Now,
		enc:     map[contractKey]avro.Schema{},
		known:   map[[32]byte]contractKey{},
		names:   map[string]Contract{},
		unknown: map[int]time.Time{},
	}
	for _, o := range opts {
		o(s)
	}
	var errs []error
	if cl == nil {
		errs = append(errs, errors.New("schemas: NewSerde needs a registry client"))
	}
	if !s.reader.Valid() {
		errs = append(errs, fmt.Errorf("schemas: reader version %d is not V1 or V2", int(s.reader)))
	}
	if s.max < 16 {
		errs = append(errs, fmt.Errorf("schemas: max record bytes %d is below 16", s.max))
	}
	if s.log == nil || s.now == nil {
		errs = append(errs, errors.New("schemas: nil logger or clock"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	for _, c := range Contracts {
		for _, v := range Versions {
			sch, err := parseContract(c, v)
			if err != nil {
				return nil, err
			}
			k := contractKey{c, v}
			s.enc[k] = sch
			s.known[sch.Fingerprint()] = k
			s.names[sch.(*avro.RecordSchema).FullName()] = c
			if c == ContractRuntimeEvent && fmt.Sprintf("%x", sch.Fingerprint()) == eventBodyFingerprints[v] {
				s.fastEvent[v] = true
			}
			for i, src := range History(c, v) {
				old, err := avro.ParseWithCache(src, "", &avro.SchemaCache{})
				if err != nil {
					return nil, fmt.Errorf("schemas: parse %s %s revision %d: %w", c, v, i+1, err)
				}
				s.known[old.Fingerprint()] = k
			}
		}
	}
	s.api = avro.Config{
		TagKey:            "avro",
		MaxByteSliceSize:  s.max,
		MaxSliceAllocSize: s.max,
	}.Freeze()
	s.readers.New = func() any { return avro.NewReader(nil, 0, avro.WithReaderConfig(s.api)) }
	s.writerP.New = func() any { return avro.NewWriter(nil, 512, avro.WithWriterConfig(s.api)) }
	return s, nil
}

// parseContract parses a compiled-in contract with a cache of its own:
// v1 and v2 name the same types, and a shared cache would hand one version
// the other's definitions.
func parseContract(c Contract, v ContractVersion) (avro.Schema, error) {
	src, err := Source(c, v)
	if err != nil {
		return nil, err
	}
	sch, err := avro.ParseWithCache(src, "", &avro.SchemaCache{})
	if err != nil {
		return nil, fmt.Errorf("schemas: parse %s %s: %w", c, v, err)
	}
	return sch, nil
}

// ReaderVersion returns the contract version decoded values are read as.
func (s *Serde) ReaderVersion() ContractVersion { return s.reader }

// SchemaID returns the schema id of contract c at version v under subject,
// looking it up (or registering it, with WithAutoRegister) on first use.
// Encode calls it; callers may call it at start-up to warm the cache.
func (s *Serde) SchemaID(ctx context.Context, subject string, c Contract, v ContractVersion) (int, error) {
	k := encKey{subject, contractKey{c, v}}
	if id, ok := s.ids.Load(k); ok {
		return id.(int), nil
	}
	sch, ok := s.enc[k.contractKey]
	if !ok {
		return 0, &EncodeError{Code: CodeInvalidVersion, Subject: subject, Version: v, Err: fmt.Errorf("no contract %s at version %d", c, int(v))}
	}
	res, err, _ := s.flight.Do("enc\x00"+subject+"\x00"+string(c)+"\x00"+strconv.Itoa(int(v)), func() (any, error) {
		if id, ok := s.ids.Load(k); ok {
			return id, nil
		}
		src := MustSource(c, v)
		var id int
		var err error
		if s.register {
			id, err = s.cl.RegisterSchema(ctx, subject, sr.Schema{Schema: src, Type: sr.TypeAvro}, -1, -1)
		} else {
			var ss sr.SubjectSchema
			ss, err = s.cl.LookupSchema(ctx, subject, sr.Schema{Schema: src, Type: sr.TypeAvro})
			id = ss.ID
		}
		if err != nil {
			return 0, s.encodeRegistryErr(subject, v, err)
		}
		if id <= 0 {
			return 0, fmt.Errorf("schemas: registry answered id %d for %s %s under %s", id, c, v, subject)
		}
		s.ids.Store(k, id)
		s.log.Debug("schema id resolved", "subject", subject, "contract", c, "version", v, "id", id, "fingerprint", fmt.Sprintf("%x", sch.Fingerprint())[:12])
		return id, nil
	})
	if err != nil {
		return 0, err
	}
	return res.(int), nil
}

func (s *Serde) encodeRegistryErr(subject string, v ContractVersion, err error) error {
	var re *sr.ResponseError
	if errors.As(err, &re) {
		switch {
		case re.StatusCode == http.StatusNotFound:
			return &EncodeError{Code: CodeNotRegistered, Subject: subject, Version: v, Err: err}
		case re.StatusCode == http.StatusConflict:
			return &EncodeError{Code: CodeIncompatible, Subject: subject, Version: v, Err: err}
		}
	}
	op := "look up"
	if s.register {
		op = "register"
	}
	return fmt.Errorf("schemas: %s %s %s: is the schema registry reachable? %w", op, subject, v, err)
}

// Encode returns value — *Intent or *RuntimeEvent — in the wire format,
// written with contract version v under subject. The value must pass
// Validate. See AppendEncode.
func (s *Serde) Encode(ctx context.Context, subject string, v ContractVersion, value any) ([]byte, error) {
	return s.AppendEncode(ctx, nil, subject, v, value)
}

// AppendEncode appends value in the wire format to b and returns the
// extended slice. Permanent problems (an unsupported type, an invalid
// value, a version the subject does not hold) are *EncodeError; a registry
// outage on the first encode of a (subject, version) is a wrapped error
// without a code.
func (s *Serde) AppendEncode(ctx context.Context, b []byte, subject string, v ContractVersion, value any) ([]byte, error) {
	var c Contract
	var verr error
	now := s.now()
	switch x := value.(type) {
	case *Intent:
		c, verr = ContractIntent, x.ValidateAt(now)
	case Intent:
		c, verr, value = ContractIntent, x.ValidateAt(now), &x
	case *RuntimeEvent:
		c, verr = ContractRuntimeEvent, x.ValidateAt(now)
	case RuntimeEvent:
		c, verr, value = ContractRuntimeEvent, x.ValidateAt(now), &x
	default:
		return b, &EncodeError{Code: CodeUnsupportedType, Subject: subject, Version: v, Err: fmt.Errorf("%T is not *Intent or *RuntimeEvent", value)}
	}
	if !v.Valid() {
		return b, &EncodeError{Code: CodeInvalidVersion, Subject: subject, Version: v, Err: fmt.Errorf("contract version %d is not V1 or V2", int(v))}
	}
	if verr != nil {
		return b, &EncodeError{Code: CodeOf(verr), Subject: subject, Version: v, Err: verr}
	}
	id, err := s.SchemaID(ctx, subject, c, v)
	if err != nil {
		return b, err
	}
	if ev, ok := value.(*RuntimeEvent); ok && s.fastEvent[v] {
		start := len(b)
		b = slices.Grow(b, 5+eventBodySizeHint(ev))
		b, _ = s.hdr.AppendEncode(b, id, nil) // never fails
		if b, ok = appendEventBody(b, ev, v); ok {
			if n := len(b) - start; n > s.max {
				return b[:start], &EncodeError{Code: CodeTooLarge, Subject: subject, Version: v, Err: fmt.Errorf("record of %d bytes over the bound of %d", n, s.max)}
			}
			return b, nil
		}
		b = b[:start] // hamba reports what the fast path refused
	}
	w := s.writerP.Get().(*avro.Writer)
	defer s.putWriter(w)
	w.Reset(nil)
	w.WriteVal(s.enc[contractKey{c, v}], value)
	if w.Error != nil {
		return b, &EncodeError{Code: CodeInvalidContract, Subject: subject, Version: v, Err: w.Error}
	}
	body := w.Buffer()
	if 5+len(body) > s.max {
		return b, &EncodeError{Code: CodeTooLarge, Subject: subject, Version: v, Err: fmt.Errorf("record of %d bytes over the bound of %d", 5+len(body), s.max)}
	}
	b, _ = s.hdr.AppendEncode(b, id, nil) // never fails
	return append(b, body...), nil
}

func (s *Serde) putWriter(w *avro.Writer) {
	w.Error = nil
	if cap(w.Buffer()) > 64<<10 {
		return // let an outsized buffer go
	}
	s.writerP.Put(w)
}

// Decode decodes a wire-format record into a new *Intent or *RuntimeEvent,
// chosen by the writer schema's record name, and returns it with the
// header's schema id and the writer's contract version (an unknown later
// version of a contract counts as the newest known one).
//
// Poison input returns a *DecodeError; a registry outage or ctx ending
// returns a wrapped error without a code.
func (s *Serde) Decode(ctx context.Context, b []byte) (value any, id int, writer ContractVersion, err error) {
	id, ws, body, err := s.header(ctx, b)
	if err != nil {
		return nil, id, 0, err
	}
	switch ws.contract {
	case ContractIntent:
		v := new(Intent)
		if err := s.decodeBody(id, ws, body, v); err != nil {
			return nil, id, ws.version, err
		}
		return v, id, ws.version, nil
	default:
		v := new(RuntimeEvent)
		if err := s.decodeBody(id, ws, body, v); err != nil {
			return nil, id, ws.version, err
		}
		return v, id, ws.version, nil
	}
}

// DecodeInto decodes a wire-format record into ptr, an *Intent or
// *RuntimeEvent, which it resets first. A record of the other contract is a
// DecodeError with CodeWrongContract. It returns the writer's contract
// version.
func (s *Serde) DecodeInto(ctx context.Context, b []byte, ptr any) (ContractVersion, error) {
	var want Contract
	switch p := ptr.(type) {
	case *Intent:
		if p == nil {
			return 0, errors.New("schemas: DecodeInto a nil *Intent")
		}
		want = ContractIntent
	case *RuntimeEvent:
		if p == nil {
			return 0, errors.New("schemas: DecodeInto a nil *RuntimeEvent")
		}
		want = ContractRuntimeEvent
	default:
		return 0, fmt.Errorf("schemas: DecodeInto %T: want *Intent or *RuntimeEvent", ptr)
	}
	id, ws, body, err := s.header(ctx, b)
	if err != nil {
		return 0, err
	}
	if ws.contract != want {
		return ws.version, &DecodeError{Code: CodeWrongContract, ID: id, Err: fmt.Errorf("schema id %d is %s, not %s", id, ws.contract, want)}
	}
	switch p := ptr.(type) {
	case *Intent:
		*p = Intent{}
	case *RuntimeEvent:
		*p = RuntimeEvent{}
	}
	return ws.version, s.decodeBody(id, ws, body, ptr)
}

// header checks the Confluent header and finds the writer schema of its id.
func (s *Serde) header(ctx context.Context, b []byte) (int, *writerSchema, []byte, error) {
	switch {
	case len(b) == 0:
		return 0, nil, nil, &DecodeError{Code: CodeEmpty}
	case len(b) > s.max:
		return 0, nil, nil, &DecodeError{Code: CodeTooLarge, Err: fmt.Errorf("record of %d bytes over the bound of %d", len(b), s.max)}
	case len(b) < 5:
		return 0, nil, nil, &DecodeError{Code: CodeTooShort, Err: fmt.Errorf("%d bytes, the header alone is 5", len(b))}
	case b[0] != 0:
		return 0, nil, nil, &DecodeError{Code: CodeBadMagic, Err: fmt.Errorf("magic byte %#x, want 0", b[0])}
	}
	id, body, err := s.hdr.DecodeID(b)
	if err != nil { // unreachable after the checks above
		return 0, nil, nil, &DecodeError{Code: CodeBadMagic, Err: err}
	}
	ws, err := s.writerFor(ctx, id)
	if err != nil {
		return id, nil, nil, err
	}
	return id, ws, body, nil
}

// writerFor returns the writer schema of id from the cache, or fetches it:
// one registry call per id however many goroutines miss at once.
func (s *Serde) writerFor(ctx context.Context, id int) (*writerSchema, error) {
	if ws, ok := s.writers.Load(id); ok {
		return ws.(*writerSchema).get()
	}
	if s.knownUnknown(id) {
		return nil, &DecodeError{Code: CodeUnknownSchemaID, ID: id, Err: errors.New("the schema registry does not know this id")}
	}
	res, err, _ := s.flight.Do("id\x00"+strconv.Itoa(id), func() (any, error) {
		if ws, ok := s.writers.Load(id); ok {
			return ws, nil
		}
		sch, err := s.cl.SchemaByID(ctx, id)
		if err != nil {
			var re *sr.ResponseError
			if errors.As(err, &re) && (re.StatusCode == http.StatusNotFound || re.ErrorCode == sr.ErrSchemaNotFound.Code) {
				s.rememberUnknown(id)
				return nil, &DecodeError{Code: CodeUnknownSchemaID, ID: id, Err: err}
			}
			return nil, fmt.Errorf("schemas: fetch writer schema id %d: is the schema registry reachable? %w", id, err)
		}
		ws := s.newWriterSchema(id, sch)
		s.writers.Store(id, ws)
		if ws.err != nil {
			s.log.Warn("schema id is not a known contract", "id", id, "err", ws.err)
		} else {
			s.log.Debug("writer schema cached", "id", id, "contract", ws.contract, "version", ws.version)
		}
		return ws, nil
	})
	if err != nil {
		return nil, err
	}
	return res.(*writerSchema).get()
}

func (ws *writerSchema) get() (*writerSchema, error) {
	if ws.err != nil {
		return nil, ws.err
	}
	return ws, nil
}

func (s *Serde) knownUnknown(id int) bool {
	s.unknownM.Lock()
	defer s.unknownM.Unlock()
	until, ok := s.unknown[id]
	if ok && s.now().After(until) {
		delete(s.unknown, id)
		return false
	}
	return ok
}

func (s *Serde) rememberUnknown(id int) {
	s.unknownM.Lock()
	defer s.unknownM.Unlock()
	if len(s.unknown) >= maxUnknownCached {
		clear(s.unknown)
	}
	s.unknown[id] = s.now().Add(unknownIDTTL)
}

// newWriterSchema identifies the contract and version of a registry schema
// and resolves it against the reader. Each pair gets freshly parsed schemas
// and a new SchemaCompatibility: hamba caches by name and fingerprint, and
// sharing across versions of one record name mixes them up.
func (s *Serde) newWriterSchema(id int, sch sr.Schema) *writerSchema {
	wrong := func(format string, args ...any) *writerSchema {
		return &writerSchema{err: &DecodeError{Code: CodeWrongContract, ID: id, Err: fmt.Errorf(format, args...)}}
	}
	if sch.Type != sr.TypeAvro {
		return wrong("schema id %d is %s, not Avro", id, sch.Type)
	}
	if len(sch.References) > 0 {
		return wrong("schema id %d has references; Spine's contracts have none", id)
	}
	writer, err := avro.ParseWithCache(sch.Schema, "", &avro.SchemaCache{})
	if err != nil {
		return wrong("schema id %d does not parse: %v", id, err)
	}
	rec, ok := writer.(*avro.RecordSchema)
	if !ok {
		return wrong("schema id %d is a %s, not a contract record", id, writer.Type())
	}
	c, ok := s.names[rec.FullName()]
	if !ok {
		return wrong("schema id %d is record %s, not a Spine contract", id, rec.FullName())
	}
	k, ok := s.known[writer.Fingerprint()]
	if !ok || k.c != c {
		k = contractKey{c, Versions[len(Versions)-1]} // a later version counts as the newest known
	}
	reader, err := parseContract(c, s.reader)
	if err != nil {
		return wrong("%v", err)
	}
	resolved, err := avro.NewSchemaCompatibility().Resolve(reader, writer)
	if err != nil {
		return wrong("schema id %d (%s) does not resolve against reader %s %s: %v", id, rec.FullName(), c, s.reader, err)
	}
	ws := &writerSchema{contract: c, version: k.v, writer: writer, resolved: resolved}
	if c == ContractRuntimeEvent && s.reader == V2 && fmt.Sprintf("%x", writer.Fingerprint()) == eventBodyFingerprints[k.v] {
		ws.fast = k.v
	}
	return ws
}

// decodeBody scans body against the writer schema, decodes it into ptr
// through the resolved schema, and validates the result.
func (s *Serde) decodeBody(id int, ws *writerSchema, body []byte, ptr any) error {
	n, derr := scanBody(ws.writer, body, s.max)
	if derr != nil {
		derr.ID = id
		return derr
	}
	if n != len(body) {
		return &DecodeError{Code: CodeTrailingBytes, ID: id, Err: fmt.Errorf("%d bytes after a %d-byte %s %s body", len(body)-n, n, ws.contract, ws.version)}
	}
	if err := s.readBody(ws, body, ptr); err != nil {
		return classifyAvroErr(id, err)
	}
	// The scan has checked every string of the body is UTF-8 (and reader
	// defaults come from the contract's schema), so only the other rules
	// are checked again.
	var verr error
	switch p := ptr.(type) {
	case *Intent:
		verr = p.validateAt(s.now(), false)
	case *RuntimeEvent:
		verr = p.validateAt(s.now(), false)
	}
	if verr != nil {
		return &DecodeError{Code: CodeOf(verr), ID: id, Err: verr}
	}
	return nil
}

// readBody decodes a scanned body into ptr: a RuntimeEvent of today's
// schema with readEventBody, anything else (or what it refuses) with hamba.
func (s *Serde) readBody(ws *writerSchema, body []byte, ptr any) error {
	if ev, ok := ptr.(*RuntimeEvent); ok && ws.fast != 0 {
		if readEventBody(body, ws.fast, ev) {
			return nil
		}
		*ev = RuntimeEvent{}
	}
	r := s.readers.Get().(*avro.Reader)
	r.Reset(body)
	r.ReadVal(ws.resolved, ptr)
	err := r.Error
	r.Error = nil
	r.Reset(nil)
	s.readers.Put(r)
	if err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}

// classifyAvroErr maps a hamba decoding error to a code. The scan catches
// these first; this is the belt to its braces.
func classifyAvroErr(id int, err error) error {
	code := CodeMalformed
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF):
		code = CodeTruncated
	case strings.Contains(err.Error(), "greater than"):
		code = CodeTooLarge
	}
	return &DecodeError{Code: code, ID: id, Err: err}
}
