package ingress

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/schemas"
	"github.com/spinerun/spine/schemas/thread"
)

// Producer produces encoded records and reports where they landed once
// Kafka acknowledged them; *pipeline.Producer is one.
type Producer interface {
	Produce(ctx context.Context, outs ...pipeline.Output) ([]pipeline.Produced, error)
}

// Verifier verifies a bearer token into the caller's provenance;
// *oidc.Verifier is one. A refused token's error carries a stable code
// (a Code() string method, as *oidc.TokenError has), answered 401; any
// other error means the token could not be judged, answered 503.
type Verifier interface {
	Verify(ctx context.Context, rawToken string) (*schemas.Provenance, error)
}

var _ Producer = (*pipeline.Producer)(nil)

// Accepted is the answer to an intent Kafka acknowledged.
type Accepted struct {
	TraceID   string `json:"trace_id"`
	IntentID  string `json:"intent_id"`
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Offset    int64  `json:"offset"`
}

// Option configures a Handler.
type Option func(*Handler)

// WithVerifier requires a bearer token verified by v on every request.
func WithVerifier(v Verifier) Option { return func(h *Handler) { h.verifier = v } }

// WithKinds accepts only these intent kinds (others are 422). Default:
// any kind.
func WithKinds(kinds ...string) Option {
	kinds = slices.Clone(kinds)
	return WithKindFunc(func(k string) bool { return slices.Contains(kinds, k) })
}

// WithKindFunc accepts the intent kinds ok accepts (others are 422).
func WithKindFunc(ok func(kind string) bool) Option { return func(h *Handler) { h.kindOK = ok } }

// WithTopic produces to topic. Default spine.intents without a prefix.
func WithTopic(t pipeline.Topic) Option { return func(h *Handler) { h.topic = t } }

// WithMaxInputBytes refuses (413) an input larger than n bytes, the
// orchestrator's own limit. Default schemas.DefaultInputLimit.
func WithMaxInputBytes(n int) Option { return func(h *Handler) { h.maxInput = n } }

// WithLogger logs accepted intents and refusals at debug level, and
// produce failures at warn. Default: discarded.
func WithLogger(l *slog.Logger) Option { return func(h *Handler) { h.log = l } }

// WithRegisterer registers spine_ingress_requests_total{code} and
// spine_ingress_request_duration_seconds{outcome} on reg. Default: none.
func WithRegisterer(reg prometheus.Registerer) Option { return func(h *Handler) { h.reg = reg } }

// Handler serves POST /v1/intents. Mount it with Mount or at a path of
// your own.
type Handler struct {
	cfg      Config
	producer Producer
	verifier Verifier
	kindOK   func(string) bool
	topic    pipeline.Topic
	maxInput int
	log      *slog.Logger
	now      func() time.Time
	idem     *idemCache
	limits   *limiters
	reg      prometheus.Registerer
	metrics  *metrics
}

// New returns the ingress handler producing through p. It does no I/O.
func New(cfg Config, p Producer, opts ...Option) (*Handler, error) {
	if p == nil {
		return nil, errors.New("ingress: a producer is required")
	}
	if errs := cfg.Validate(); len(errs) > 0 {
		return nil, fmt.Errorf("ingress: %w", errors.Join(errs...))
	}
	h := &Handler{cfg: cfg.withDefaults(), producer: p, topic: pipeline.Layout{}.Intents(), maxInput: schemas.DefaultInputLimit, now: time.Now}
	for _, o := range opts {
		o(h)
	}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	if h.maxInput <= 0 || h.maxInput > schemas.MaxInputBytes {
		return nil, fmt.Errorf("ingress: max input %d is not in 1..%d", h.maxInput, schemas.MaxInputBytes)
	}
	m, err := newMetrics(h.reg)
	if err != nil {
		return nil, fmt.Errorf("ingress: metrics: %w", err)
	}
	h.metrics = m
	h.idem = newIdemCache(h.cfg.IdempotencyTTL, h.cfg.IdempotencyKeys, h.now)
	h.limits = newLimiters(h.cfg.Rate, h.cfg.Burst, h.now)
	return h, nil
}

// Path is where the stack mounts the handler.
const Path = "/v1/intents"

// Mount registers the handler at Path on mux, for every method (a method
// other than POST gets a JSON 405).
func (h *Handler) Mount(mux *http.ServeMux) { mux.Handle(Path, h) }

// refusal is an answer other than 202.
type refusal struct {
	status int
	body   ErrorBody
	header map[string]string
}

func refuse(status int, code, field, format string, args ...any) *refusal {
	return &refusal{status: status, body: ErrorBody{Error: fmt.Sprintf(format, args...), Code: code, Field: field}}
}

func (r *refusal) with(k, v string) *refusal {
	if r.header == nil {
		r.header = map[string]string{}
	}
	r.header[k] = v
	return r
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := h.now()
	a, replay, ref := h.serve(w, r, start)
	if ref != nil {
		for k, v := range ref.header {
			w.Header().Set(k, v)
		}
		h.log.Debug("intent refused", "status", ref.status, "code", ref.body.Code, "field", ref.body.Field, "remote", r.RemoteAddr)
		writeJSON(w, ref.status, ref.body)
		h.metrics.requests.WithLabelValues(ref.body.Code).Inc()
		h.metrics.duration.WithLabelValues("refused").Observe(time.Since(start).Seconds())
		return
	}
	w.Header().Set("Location", "/v1/runs/"+a.TraceID)
	if replay {
		w.Header().Set("Idempotent-Replayed", "true")
	}
	h.log.Debug("intent accepted", "trace_id", a.TraceID, "topic", a.Topic, "partition", a.Partition, "offset", a.Offset, "replayed", replay)
	writeJSON(w, http.StatusAccepted, a)
	code := "accepted"
	if replay {
		code = "replayed"
	}
	h.metrics.requests.WithLabelValues(code).Inc()
	h.metrics.duration.WithLabelValues("accepted").Observe(time.Since(start).Seconds())
}

func (h *Handler) serve(w http.ResponseWriter, r *http.Request, start time.Time) (*Accepted, bool, *refusal) {
	if r.Method != http.MethodPost {
		return nil, false, refuse(http.StatusMethodNotAllowed, CodeMethodNotAllowed, "", "%s is not allowed on %s: POST an intent", r.Method, Path).with("Allow", http.MethodPost)
	}
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(start.Add(h.cfg.ReadTimeout))
	_ = rc.SetWriteDeadline(start.Add(h.cfg.WriteTimeout))

	cloudEvents, ref := mediaType(r.Header.Get("Content-Type"))
	if ref != nil {
		return nil, false, ref
	}

	// Identity, then the caller's bucket.
	var prov *schemas.Provenance
	who := "addr:" + remoteHost(r.RemoteAddr)
	if h.verifier != nil {
		var ref *refusal
		if prov, ref = h.authenticate(r); ref != nil {
			return nil, false, ref
		}
		who = "sub:" + prov.Issuer + "\x00" + prov.Subject
	}
	if ok, wait := h.limits.allow(who); !ok {
		return nil, false, refuse(http.StatusTooManyRequests, CodeRateLimited, "", "too many requests from this caller: retry in %ds", retryAfter(wait)).
			with("Retry-After", strconv.Itoa(retryAfter(wait)))
	}

	body, ref := h.readBody(r)
	if ref != nil {
		return nil, false, ref
	}
	req, errs := DecodeBody(body, cloudEvents)
	if len(errs) > 0 {
		f := errs[0]
		return nil, false, &refusal{status: http.StatusBadRequest, body: ErrorBody{Error: f.Error, Code: f.Code, Field: f.Field, Errors: errs}}
	}
	prefix := ""
	if cloudEvents {
		prefix = "data."
	}
	if len(req.Input) > h.maxInput {
		return nil, false, refuse(http.StatusRequestEntityTooLarge, CodeInputTooLarge, prefix+"input", "the input is %d bytes, more than the %d admitted", len(req.Input), h.maxInput)
	}
	if h.kindOK != nil && !h.kindOK(req.Kind) {
		return nil, false, refuse(http.StatusUnprocessableEntity, CodeUnknownKind, prefix+"kind", "intent kind %q is not accepted here", req.Kind)
	}

	// Idempotency: per caller; a CloudEvent's source and id are its key.
	key := r.Header.Get("Idempotency-Key")
	if key == "" && req.CloudEvent != nil {
		key = "ce:" + req.CloudEvent.Source + "\x00" + req.CloudEvent.ID
	} else if key != "" && !validKey(key) {
		return nil, false, refuse(http.StatusBadRequest, CodeBadIdempotencyKey, "Idempotency-Key", "the Idempotency-Key must be 1 to 255 printable ASCII characters")
	}
	in := h.intent(req, prov)
	if key == "" {
		a, ref := h.produce(r.Context(), in)
		return a, false, ref
	}
	scope := in.Actor
	if prov != nil {
		scope = prov.Issuer + "\x00" + prov.Subject
	}
	if req.TraceID == "" {
		in.TraceID = derivedID("trace", scope, key)
	}
	in.IntentID = derivedID("intent", scope, key)
	e, owner, conflict := h.idem.claim(scope+"\x00"+key, sha256.Sum256(body))
	switch {
	case conflict:
		return nil, false, refuse(http.StatusConflict, CodeIdempotencyClash, "Idempotency-Key", "this Idempotency-Key was used with another body")
	case !owner:
		if a, ok := e.wait(r.Context()); ok {
			return a, true, nil
		}
		return nil, false, refuse(http.StatusServiceUnavailable, CodeKafkaUnavailable, "", "the first request with this Idempotency-Key failed or is still running: retry").with("Retry-After", "1")
	}
	a, ref := h.produce(r.Context(), in)
	h.idem.finish(e, a)
	return a, false, ref
}

// mediaType accepts application/json and application/cloudevents+json,
// in UTF-8.
func mediaType(ct string) (cloudEvents bool, ref *refusal) {
	mt, params, err := mime.ParseMediaType(ct)
	if err == nil {
		if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") {
			err = errors.New("charset")
		}
	}
	switch {
	case err != nil:
	case mt == "application/json":
		return false, nil
	case mt == "application/cloudevents+json":
		return true, nil
	}
	return false, refuse(http.StatusUnsupportedMediaType, CodeUnsupportedMedia, "Content-Type",
		"Content-Type must be application/json or application/cloudevents+json (UTF-8)").with("Accept-Post", "application/json, application/cloudevents+json")
}

// authenticate verifies the Authorization header's bearer token. A token
// in the query string is never looked at.
func (h *Handler) authenticate(r *http.Request) (*schemas.Provenance, *refusal) {
	auth := r.Header.Get("Authorization")
	scheme, token, _ := strings.Cut(auth, " ")
	token = strings.TrimSpace(token)
	if auth == "" || !strings.EqualFold(scheme, "Bearer") || token == "" {
		return nil, refuse(http.StatusUnauthorized, CodeNoToken, "Authorization", "a bearer token is required: Authorization: Bearer <token>").
			with("WWW-Authenticate", `Bearer realm="spine"`)
	}
	prov, err := h.verifier.Verify(r.Context(), token)
	if err == nil && (prov == nil || prov.Subject == "") {
		err = errors.New("verifier returned no subject")
	}
	if err != nil {
		var coded interface{ Code() string }
		if errors.As(err, &coded) {
			return nil, refuse(http.StatusUnauthorized, coded.Code(), "Authorization", "the bearer token was refused: %s", coded.Code()).
				with("WWW-Authenticate", `Bearer realm="spine", error="invalid_token", error_description="`+coded.Code()+`"`)
		}
		h.log.Warn("token not verified", "err", err)
		return nil, refuse(http.StatusServiceUnavailable, CodeIssuerUnavailable, "", "the token could not be verified now (is the identity provider reachable?): retry").with("Retry-After", "1")
	}
	return prov, nil
}

// readBody reads the body within the size limit and the read deadline.
func (h *Handler) readBody(r *http.Request) ([]byte, *refusal) {
	limit := h.cfg.MaxBodyBytes
	tooLarge := func() *refusal {
		return refuse(http.StatusRequestEntityTooLarge, CodeBodyTooLarge, "", "the body is larger than %d bytes", limit)
	}
	if r.ContentLength > limit {
		return nil, tooLarge()
	}
	n := r.ContentLength
	if n < 0 || n > limit {
		n = 512
	}
	buf := make([]byte, 0, n+1)
	body, err := readAll(io.LimitReader(r.Body, limit+1), buf)
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		return nil, refuse(http.StatusRequestTimeout, CodeTimeout, "", "the body did not arrive within %s", h.cfg.ReadTimeout).with("Connection", "close")
	case err != nil:
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return nil, refuse(http.StatusRequestTimeout, CodeTimeout, "", "the body did not arrive within %s", h.cfg.ReadTimeout).with("Connection", "close")
		}
		return nil, refuse(http.StatusBadRequest, CodeInvalidJSON, "", "the body could not be read: %v", err)
	case int64(len(body)) > limit:
		return nil, tooLarge().with("Connection", "close")
	}
	return body, nil
}

func readAll(r io.Reader, b []byte) ([]byte, error) {
	for {
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
	}
}

// intent builds the intent as `spine produce` does: random ids, now,
// contract V1 unless asked (or V2 when a V2 field is set); the verified
// subject as actor and the provenance when there is one.
func (h *Handler) intent(req *Request, prov *schemas.Provenance) *schemas.Intent {
	v := req.Contract
	if v == 0 {
		v = schemas.V1
		if len(req.V2Fields) > 0 {
			v = schemas.V2
		}
	}
	in := &schemas.Intent{
		IntentID: newID(), TraceID: req.TraceID, Actor: req.Actor, Kind: req.Kind, Input: req.Input,
		SchemaVersion: v, Timestamp: h.now().UTC(),
		Priority: req.Priority, Tenant: req.Tenant, DeadlineMs: req.DeadlineMs, Attributes: req.Attributes,
	}
	if in.TraceID == "" {
		in.TraceID = thread.NewTraceID(in.Timestamp)
	}
	if in.Actor == "" {
		in.Actor = "http"
	}
	if prov != nil {
		in.Actor = prov.Subject
		in.Provenance = prov
	}
	if ce := req.CloudEvent; ce != nil && v == schemas.V2 {
		if in.Attributes == nil {
			in.Attributes = map[string]string{}
		}
		in.Attributes["ce_id"], in.Attributes["ce_source"], in.Attributes["ce_type"] = ce.ID, ce.Source, ce.Type
	}
	return in
}

// produce writes the intent and waits for Kafka's acknowledgement.
func (h *Handler) produce(ctx context.Context, in *schemas.Intent) (*Accepted, *refusal) {
	if err := in.Validate(); err != nil {
		return nil, refuse(http.StatusBadRequest, CodeInvalidValue, "", "the intent is invalid: %v", err)
	}
	ctx, cancel := context.WithTimeout(ctx, h.cfg.ProduceTimeout)
	defer cancel()
	res, err := h.producer.Produce(ctx, pipeline.Output{Topic: h.topic, Key: []byte(in.TraceID), Value: in, Version: in.SchemaVersion})
	if err == nil && (len(res) != 1 || res[0].Err != nil) {
		err = errors.New("no acknowledgement")
	}
	if err != nil {
		h.log.Warn("intent not produced", "trace_id", in.TraceID, "topic", h.topic, "err", err)
		return nil, refuse(http.StatusServiceUnavailable, CodeKafkaUnavailable, "", "the intent was not written (is Kafka, or the schema registry, reachable?): retry, with the same Idempotency-Key").with("Retry-After", "1")
	}
	return &Accepted{TraceID: in.TraceID, IntentID: in.IntentID, Topic: string(res[0].Topic), Partition: res[0].Partition, Offset: res[0].Offset}, nil
}

func validKey(k string) bool {
	if len(k) > 255 {
		return false
	}
	for i := 0; i < len(k); i++ {
		if k[i] < 0x20 || k[i] > 0x7e {
			return false
		}
	}
	return true
}

func remoteHost(addr string) string {
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}
	return addr
}

// newID returns a random 128-bit id in hex (an intent id).
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
