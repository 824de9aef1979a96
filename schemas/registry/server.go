package registry

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"math"
	"mime"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/kgo"
)

// ContentType is the media type of every response, as Confluent's.
const ContentType = "application/vnd.schemaregistry.v1+json"

// Handler serves the Confluent Schema Registry REST API. Requests that
// arrive before the registry is Ready wait for it (bounded).
func (r *Registry) Handler() http.Handler { return r.handler(true) }

// InProcess is a transport that serves requests in this process with the
// registry's handler, past the write authentication of WithWriteAuth (not
// past basic auth): for the process that runs the registry to register
// its own contracts without a token. Give it to a client as
// &http.Client{Transport: reg.InProcess()}; the URL's host is ignored.
func (r *Registry) InProcess() http.RoundTripper {
	return inProcess{r.handler(false)}
}

type inProcess struct{ h http.Handler }

func (t inProcess) RoundTrip(req *http.Request) (*http.Response, error) {
	rec := httptest.NewRecorder()
	t.h.ServeHTTP(rec, req)
	resp := rec.Result()
	resp.Request = req
	return resp, nil
}

// IsWrite reports whether a request changes the registry: POST of a
// subject's versions, any PUT or DELETE. The other POSTs only read.
func IsWrite(req *http.Request) bool {
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return false
	case http.MethodPost:
		p := strings.TrimSuffix(req.URL.Path, "/")
		return strings.HasPrefix(p, "/subjects/") && strings.HasSuffix(p, "/versions")
	}
	return true
}

// authorizeWrite checks the bearer token of a write.
func (r *Registry) authorizeWrite(req *http.Request) *Error {
	scheme, token, _ := strings.Cut(req.Header.Get("Authorization"), " ")
	if !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
		return errf(errUnauthorized, "a bearer token is required to change the registry: Authorization: Bearer <token>")
	}
	if err := r.cfg.writeAuth(req.Context(), strings.TrimSpace(token)); err != nil {
		var tmp interface{ Temporary() bool }
		if errors.As(err, &tmp) && tmp.Temporary() {
			return errf(errAuthUnavailable, "the token issuer is unreachable; try again")
		}
		code := "invalid"
		var coded interface{ Code() string }
		if errors.As(err, &coded) {
			code = coded.Code()
		}
		return errf(errUnauthorized, "the bearer token was refused: %s", code)
	}
	return nil
}

func (r *Registry) handler(guardWrites bool) http.Handler {
	mux := http.NewServeMux()
	route := func(pattern string, methods map[string]func(http.ResponseWriter, *http.Request) error) {
		mux.HandleFunc(pattern, func(w http.ResponseWriter, req *http.Request) {
			h, ok := methods[req.Method]
			if !ok {
				writeErr(w, errMethodNotAllowed)
				return
			}
			if err := h(w, req); err != nil {
				var e *Error
				if !errors.As(err, &e) {
					r.log.Error("schema registry request failed", "method", req.Method, "path", req.URL.Path, "err", err)
					e = errf(ErrStore, "%v", err)
				}
				writeErr(w, e)
			}
		})
	}
	type m = map[string]func(http.ResponseWriter, *http.Request) error
	route("/{$}", m{"GET": func(w http.ResponseWriter, _ *http.Request) error { return writeJSON(w, struct{}{}) }})
	route("/subjects", m{"GET": r.getSubjects})
	route("/subjects/{subject}", m{"POST": r.lookup, "DELETE": r.deleteSubject})
	route("/subjects/{subject}/versions", m{"GET": r.getVersions, "POST": r.postVersion})
	route("/subjects/{subject}/versions/{version}", m{"GET": r.getVersion, "DELETE": r.deleteVersion})
	route("/subjects/{subject}/versions/{version}/schema", m{"GET": r.getVersionSchema})
	route("/subjects/{subject}/versions/{version}/referencedby", m{"GET": r.getReferencedBy})
	route("/schemas", m{"GET": r.getSchemas})
	route("/schemas/types", m{"GET": func(w http.ResponseWriter, _ *http.Request) error { return writeJSON(w, []string{"AVRO"}) }})
	route("/schemas/ids/{id}", m{"GET": r.getByID})
	route("/schemas/ids/{id}/schema", m{"GET": r.getByIDSchema})
	route("/schemas/ids/{id}/versions", m{"GET": r.getByIDVersions})
	route("/schemas/ids/{id}/subjects", m{"GET": r.getByIDSubjects})
	route("/config", m{"GET": r.getConfig, "PUT": r.putConfig, "DELETE": r.deleteConfig})
	route("/config/{subject}", m{"GET": r.getConfig, "PUT": r.putConfig, "DELETE": r.deleteConfig})
	route("/compatibility/subjects/{subject}/versions", m{"POST": r.checkCompat})
	route("/compatibility/subjects/{subject}/versions/{version}", m{"POST": r.checkCompat})
	route("/mode", m{"GET": func(w http.ResponseWriter, _ *http.Request) error {
		return writeJSON(w, map[string]string{"mode": "READWRITE"})
	}})
	route("/mode/{subject}", m{"GET": func(w http.ResponseWriter, _ *http.Request) error {
		return writeJSON(w, map[string]string{"mode": "READWRITE"})
	}})
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) { writeErr(w, errNotFound) })

	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		rec := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
		defer func() {
			_, pattern := mux.Handler(req)
			r.met.requests.WithLabelValues(req.Method+" "+pattern, strconv.Itoa(rec.code)).Inc()
		}()
		if r.cfg.user != "" {
			u, p, ok := req.BasicAuth()
			if !ok || subtle.ConstantTimeCompare([]byte(u), []byte(r.cfg.user)) != 1 || subtle.ConstantTimeCompare([]byte(p), []byte(r.cfg.pass)) != 1 {
				rec.Header().Set("WWW-Authenticate", `Basic realm="schema-registry"`)
				writeErr(rec, errUnauthorized)
				return
			}
		}
		if guardWrites && r.cfg.writeAuth != nil && IsWrite(req) {
			if e := r.authorizeWrite(req); e != nil {
				rec.Header().Set("WWW-Authenticate", `Bearer realm="schema-registry"`)
				writeErr(rec, e)
				return
			}
		}
		if req.Method == http.MethodPost || req.Method == http.MethodPut {
			if ct := req.Header.Get("Content-Type"); ct != "" {
				mt, _, err := mime.ParseMediaType(ct)
				switch {
				case err != nil:
					writeErr(rec, errUnsupportedMediaType)
					return
				case mt == ContentType, mt == "application/vnd.schemaregistry+json", mt == "application/json", mt == "application/octet-stream", mt == "text/plain":
				default:
					writeErr(rec, errUnsupportedMediaType)
					return
				}
			}
		}
		select {
		case <-r.ready:
		case <-req.Context().Done():
			return
		case <-time.After(30 * time.Second):
			writeErr(rec, errf(ErrOperationTimeout, "the registry has not replayed %s yet", r.cfg.topic))
			return
		}
		mux.ServeHTTP(rec, req)
	})
}

type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.code = code
	s.ResponseWriter.WriteHeader(code)
}

func writeJSON(w http.ResponseWriter, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", ContentType)
	_, _ = w.Write(b)
	return nil
}

func writeRaw(w http.ResponseWriter, s string) error {
	w.Header().Set("Content-Type", ContentType)
	_, _ = io.WriteString(w, s)
	return nil
}

func writeErr(w http.ResponseWriter, e *Error) {
	b, _ := json.Marshal(e)
	w.Header().Set("Content-Type", ContentType)
	w.WriteHeader(e.Status)
	_, _ = w.Write(b)
}

// schemaRequest is the body of register, lookup and compatibility calls.
type schemaRequest struct {
	Schema     string            `json:"schema"`
	SchemaType string            `json:"schemaType"`
	References []json.RawMessage `json:"references"`
}

// parsedSchema is a request's schema, validated.
type parsedSchema struct {
	text string // normalized
	avro avro.Schema
}

// readBody reads a capped body.
func (r *Registry) readBody(w http.ResponseWriter, req *http.Request) ([]byte, error) {
	b, err := io.ReadAll(http.MaxBytesReader(w, req.Body, r.cfg.maxBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, errf(ErrSchemaTooLarge, "Request body is larger than the limit of %d bytes", r.cfg.maxBody)
		}
		return nil, errf(ErrInvalidSchema, "Could not read the request body: %v", err)
	}
	return b, nil
}

// DecodeSchemaRequest decodes and validates the JSON body of a register,
// lookup or compatibility request: the schema must be Avro (schemaType
// absent or AVRO), without references, and parse. The error is always an
// *Error with code 42201 (or 42209 when too large).
func DecodeSchemaRequest(body []byte) (normalized string, err error) {
	p, err := decodeSchemaRequest(body)
	if err != nil {
		return "", err
	}
	return p.text, nil
}

func decodeSchemaRequest(body []byte) (*parsedSchema, error) {
	var sr schemaRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&sr); err != nil {
		return nil, errf(ErrInvalidSchema, "Invalid request body: %v", err)
	}
	if dec.More() {
		return nil, errf(ErrInvalidSchema, "Invalid request body: trailing data after the JSON object")
	}
	if t := strings.ToUpper(sr.SchemaType); t != "" && t != "AVRO" {
		return nil, errf(ErrInvalidSchema, "Schema type %q is not supported: this registry serves AVRO only", sr.SchemaType)
	}
	if len(sr.References) > 0 {
		return nil, errf(ErrInvalidSchema, "Schema references are not supported by this registry")
	}
	if strings.TrimSpace(sr.Schema) == "" {
		return nil, errf(ErrInvalidSchema, "Invalid schema: empty schema")
	}
	norm, err := Normalize(sr.Schema)
	if err != nil {
		return nil, errf(ErrInvalidSchema, "Invalid schema %s: not JSON: %v", abbreviate(sr.Schema), err)
	}
	s, err := Parse(norm)
	if err != nil {
		return nil, errf(ErrInvalidSchema, "Invalid schema %s, details: %v", abbreviate(sr.Schema), err)
	}
	return &parsedSchema{text: norm, avro: s}, nil
}

func abbreviate(s string) string {
	if len(s) > 200 {
		return s[:200] + "…"
	}
	return s
}

func (r *Registry) schemaBody(w http.ResponseWriter, req *http.Request) (*parsedSchema, error) {
	b, err := r.readBody(w, req)
	if err != nil {
		return nil, err
	}
	return decodeSchemaRequest(b)
}

func boolParam(req *http.Request, name string) bool {
	v, _ := strconv.ParseBool(req.URL.Query().Get(name))
	return v
}

// subjectParam returns the subject path value.
func subjectParam(req *http.Request) string { return req.PathValue("subject") }

func validSubject(s string) error {
	if s == "" || len(s) > 4096 || strings.IndexFunc(s, unicode.IsControl) >= 0 {
		return errf(ErrInvalidSubject, "The specified subject %q is not a valid subject name", s)
	}
	return nil
}

// versionParam parses {version}: a number in [1, 2^31-1], "latest" or -1.
// It returns -1 for latest.
func versionParam(req *http.Request) (int, error) {
	v := req.PathValue("version")
	if v == "" {
		return -1, nil
	}
	if v == "latest" {
		return -1, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n == 0 || n < -1 || n > math.MaxInt32 {
		return 0, errf(ErrInvalidVersion, "The specified version '%s' is not a valid version id. Allowed values are between [1, 2^31-1] and the string \"latest\"", v)
	}
	return int(n), nil
}

func idParam(req *http.Request) (int, error) {
	n, err := strconv.ParseInt(req.PathValue("id"), 10, 32)
	if err != nil || n < 0 {
		return 0, errf(ErrSchemaNotFound, "Schema %s not found", req.PathValue("id"))
	}
	return int(n), nil
}

// subjectVersion is the GET version response.
type subjectVersion struct {
	Subject string `json:"subject"`
	Version int    `json:"version"`
	ID      int    `json:"id"`
	Schema  string `json:"schema"`
}

func (r *Registry) getSubjects(w http.ResponseWriter, req *http.Request) error {
	prefix := req.URL.Query().Get("subjectPrefix")
	r.mu.RLock()
	names := r.st.subjectNames(boolParam(req, "deleted"))
	r.mu.RUnlock()
	out := []string{}
	for _, n := range names {
		if strings.HasPrefix(n, prefix) {
			out = append(out, n)
		}
	}
	return writeJSON(w, out)
}

func (r *Registry) getVersions(w http.ResponseWriter, req *http.Request) error {
	subject := subjectParam(req)
	r.mu.RLock()
	vs := r.st.versions(subject, boolParam(req, "deleted"))
	r.mu.RUnlock()
	if len(vs) == 0 {
		return errf(ErrSubjectNotFound, "Subject '%s' not found.", subject)
	}
	out := make([]int, len(vs))
	for i, v := range vs {
		out[i] = v.Version
	}
	return writeJSON(w, out)
}

// resolve finds a subject's version under the read lock. With deleted,
// soft-deleted versions count (and "latest" is the latest of them all).
func (r *Registry) resolve(st *state, subject string, version int, deleted bool) (*schemaValue, error) {
	vs := st.versions(subject, deleted)
	if len(vs) == 0 {
		return nil, errf(ErrSubjectNotFound, "Subject '%s' not found.", subject)
	}
	if version == -1 {
		return vs[len(vs)-1], nil
	}
	for _, v := range vs {
		if v.Version == version {
			return v, nil
		}
	}
	return nil, errf(ErrVersionNotFound, "Version %d not found.", version)
}

func (r *Registry) getVersion(w http.ResponseWriter, req *http.Request) error {
	version, err := versionParam(req)
	if err != nil {
		return err
	}
	r.mu.RLock()
	v, err := r.resolve(r.st, subjectParam(req), version, boolParam(req, "deleted"))
	r.mu.RUnlock()
	if err != nil {
		return err
	}
	return writeJSON(w, subjectVersion{v.Subject, v.Version, v.ID, v.Schema})
}

func (r *Registry) getVersionSchema(w http.ResponseWriter, req *http.Request) error {
	version, err := versionParam(req)
	if err != nil {
		return err
	}
	r.mu.RLock()
	v, err := r.resolve(r.st, subjectParam(req), version, boolParam(req, "deleted"))
	r.mu.RUnlock()
	if err != nil {
		return err
	}
	return writeRaw(w, v.Schema)
}

func (r *Registry) getReferencedBy(w http.ResponseWriter, req *http.Request) error {
	version, err := versionParam(req)
	if err != nil {
		return err
	}
	r.mu.RLock()
	_, err = r.resolve(r.st, subjectParam(req), version, false)
	r.mu.RUnlock()
	if err != nil {
		return err
	}
	return writeJSON(w, []int{})
}

func (r *Registry) getSchemas(w http.ResponseWriter, req *http.Request) error {
	prefix := req.URL.Query().Get("subjectPrefix")
	deleted, latestOnly := boolParam(req, "deleted"), boolParam(req, "latestOnly")
	out := []subjectVersion{}
	r.mu.RLock()
	for _, s := range r.st.subjectNames(deleted) {
		if !strings.HasPrefix(s, prefix) {
			continue
		}
		vs := r.st.versions(s, deleted)
		if latestOnly {
			vs = vs[len(vs)-1:]
		}
		for _, v := range vs {
			out = append(out, subjectVersion{v.Subject, v.Version, v.ID, v.Schema})
		}
	}
	r.mu.RUnlock()
	return writeJSON(w, out)
}

func (r *Registry) schemaByID(req *http.Request) (string, error) {
	id, err := idParam(req)
	if err != nil {
		return "", err
	}
	r.mu.RLock()
	text, ok := r.st.byID[id]
	r.mu.RUnlock()
	if !ok {
		return "", errf(ErrSchemaNotFound, "Schema %d not found", id)
	}
	return text, nil
}

func (r *Registry) getByID(w http.ResponseWriter, req *http.Request) error {
	text, err := r.schemaByID(req)
	if err != nil {
		return err
	}
	return writeJSON(w, struct {
		Schema string `json:"schema"`
	}{text})
}

func (r *Registry) getByIDSchema(w http.ResponseWriter, req *http.Request) error {
	text, err := r.schemaByID(req)
	if err != nil {
		return err
	}
	return writeRaw(w, text)
}

type subjectVersionRef struct {
	Subject string `json:"subject"`
	Version int    `json:"version"`
}

func (r *Registry) usages(req *http.Request) ([]subjectVersionRef, error) {
	id, err := idParam(req)
	if err != nil {
		return nil, err
	}
	deleted := boolParam(req, "deleted")
	r.mu.RLock()
	defer r.mu.RUnlock()
	if _, ok := r.st.byID[id]; !ok {
		return nil, errf(ErrSchemaNotFound, "Schema %d not found", id)
	}
	out := []subjectVersionRef{}
	for _, s := range r.st.subjectNames(true) {
		for _, v := range r.st.versions(s, deleted) {
			if v.ID == id {
				out = append(out, subjectVersionRef{v.Subject, v.Version})
			}
		}
	}
	return out, nil
}

func (r *Registry) getByIDVersions(w http.ResponseWriter, req *http.Request) error {
	out, err := r.usages(req)
	if err != nil {
		return err
	}
	return writeJSON(w, out)
}

func (r *Registry) getByIDSubjects(w http.ResponseWriter, req *http.Request) error {
	us, err := r.usages(req)
	if err != nil {
		return err
	}
	out := []string{}
	for _, u := range us {
		if !slices.Contains(out, u.Subject) {
			out = append(out, u.Subject)
		}
	}
	sort.Strings(out)
	return writeJSON(w, out)
}

func (r *Registry) lookup(w http.ResponseWriter, req *http.Request) error {
	subject := subjectParam(req)
	p, err := r.schemaBody(w, req)
	if err != nil {
		return err
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	vs := r.st.versions(subject, boolParam(req, "deleted"))
	if len(vs) == 0 {
		return errf(ErrSubjectNotFound, "Subject '%s' not found.", subject)
	}
	for i := len(vs) - 1; i >= 0; i-- {
		if v := vs[i]; v.Schema == p.text {
			return writeJSON(w, subjectVersion{v.Subject, v.Version, v.ID, v.Schema})
		}
	}
	return errf(ErrSchemaNotFound, "Schema not found")
}

// liveSchemas returns the parsed live versions of subject, oldest first.
func (st *state) liveSchemas(subject string) ([]checkVersion, error) {
	var out []checkVersion
	for _, v := range st.versions(subject, false) {
		s, err := st.schema(v.ID)
		if err != nil {
			return nil, err
		}
		out = append(out, checkVersion{Version: v.Version, Schema: s})
	}
	return out, nil
}

func (r *Registry) postVersion(w http.ResponseWriter, req *http.Request) error {
	subject := subjectParam(req)
	if err := validSubject(subject); err != nil {
		return err
	}
	p, err := r.schemaBody(w, req)
	if err != nil {
		return err
	}
	id, err := r.registerSchema(req.Context(), subject, p)
	if err != nil {
		return err
	}
	return writeJSON(w, struct {
		ID int `json:"id"`
	}{id})
}

// registerSchema registers a validated schema under subject: the existing
// id if the subject already has it live, otherwise a new version after the
// compatibility check (409 with reasons when it fails).
func (r *Registry) registerSchema(ctx context.Context, subject string, p *parsedSchema) (int, error) {
	var id int
	err := r.write(ctx, func(st *state) ([]*kgo.Record, error) {
		all := st.versions(subject, true)
		for _, v := range all {
			if !v.Deleted && v.Schema == p.text {
				id = v.ID
				return nil, nil
			}
		}
		live, err := st.liveSchemas(subject)
		if err != nil {
			return nil, err
		}
		level := st.level(subject, r.cfg.defaultLevel)
		if reasons := check(level, p.avro, live); len(reasons) > 0 {
			r.met.rejected.Inc()
			return nil, errf(ErrIncompatibleSchema, "Schema being registered is incompatible with an earlier schema for subject \"%s\", details: [%s]", subject, strings.Join(messages(level, reasons), ", "))
		}
		var ok bool
		if id, ok = st.byText[p.text]; !ok {
			id = st.maxID + 1
		}
		version := 1
		if len(all) > 0 {
			version = all[len(all)-1].Version + 1
		}
		val, _ := json.Marshal(schemaValue{Subject: subject, Version: version, ID: id, Schema: p.text})
		return []*kgo.Record{{Key: schemaKey(subject, version), Value: val}}, nil
	})
	return id, err
}

func (r *Registry) deleteSubject(w http.ResponseWriter, req *http.Request) error {
	subject := subjectParam(req)
	permanent := boolParam(req, "permanent")
	deleted := []int{}
	err := r.write(req.Context(), func(st *state) ([]*kgo.Record, error) {
		deleted = deleted[:0]
		all := st.versions(subject, true)
		if len(all) == 0 {
			return nil, errf(ErrSubjectNotFound, "Subject '%s' not found.", subject)
		}
		live := st.versions(subject, false)
		var recs []*kgo.Record
		if !permanent {
			if len(live) == 0 {
				return nil, errf(ErrSubjectSoftDeleted, "Subject '%s' was soft deleted.Set permanent=true to delete permanently", subject)
			}
			for _, v := range live {
				nv := *v
				nv.Deleted = true
				val, _ := json.Marshal(nv)
				recs = append(recs, &kgo.Record{Key: schemaKey(subject, v.Version), Value: val})
				deleted = append(deleted, v.Version)
			}
			return recs, nil
		}
		if len(live) > 0 {
			return nil, errf(ErrSubjectNotSoftDeleted, "Subject '%s' was not deleted first before being permanently deleted", subject)
		}
		recs = append(recs, watermark(st))
		for _, v := range all {
			recs = append(recs, &kgo.Record{Key: schemaKey(subject, v.Version)})
			deleted = append(deleted, v.Version)
		}
		if _, ok := st.subjectCf[subject]; ok {
			recs = append(recs, &kgo.Record{Key: configKey(subject)})
		}
		return recs, nil
	})
	if err != nil {
		return err
	}
	return writeJSON(w, deleted)
}

// watermark records the highest id ever assigned, so a permanent delete
// never lets an id be reused, even after compaction drops its record.
func watermark(st *state) *kgo.Record {
	val, _ := json.Marshal(watermarkValue{MaxID: st.maxID})
	return &kgo.Record{Key: watermarkKey(), Value: val}
}

func (r *Registry) deleteVersion(w http.ResponseWriter, req *http.Request) error {
	subject := subjectParam(req)
	version, err := versionParam(req)
	if err != nil {
		return err
	}
	permanent := boolParam(req, "permanent")
	var done int
	err = r.write(req.Context(), func(st *state) ([]*kgo.Record, error) {
		if len(st.versions(subject, true)) == 0 {
			return nil, errf(ErrSubjectNotFound, "Subject '%s' not found.", subject)
		}
		v, err := r.resolve(st, subject, version, permanent || version != -1)
		if err != nil {
			return nil, err
		}
		done = v.Version
		if !permanent {
			if v.Deleted {
				return nil, errf(ErrVersionSoftDeleted, "Subject '%s' Version %d was soft deleted.Set permanent=true to delete permanently", subject, v.Version)
			}
			nv := *v
			nv.Deleted = true
			val, _ := json.Marshal(nv)
			return []*kgo.Record{{Key: schemaKey(subject, v.Version), Value: val}}, nil
		}
		if !v.Deleted {
			return nil, errf(ErrVersionNotSoftDeleted, "Subject '%s' Version %d was not deleted first before being permanently deleted", subject, v.Version)
		}
		return []*kgo.Record{watermark(st), {Key: schemaKey(subject, v.Version)}}, nil
	})
	if err != nil {
		return err
	}
	return writeJSON(w, done)
}

// configBody is the PUT /config body; compatibilityLevel is what GET
// answers (Confluent's field), compatibility what PUT takes and answers.
type configBody struct {
	Compatibility      string `json:"compatibility,omitempty"`
	CompatibilityLevel string `json:"compatibilityLevel,omitempty"`
}

func (r *Registry) getConfig(w http.ResponseWriter, req *http.Request) error {
	subject := subjectParam(req)
	r.mu.RLock()
	lvl, ok := r.st.subjectCf[subject]
	global := r.st.level("", r.cfg.defaultLevel)
	r.mu.RUnlock()
	switch {
	case subject == "":
		lvl = global
	case !ok && boolParam(req, "defaultToGlobal"):
		lvl = global
	case !ok:
		return errf(ErrSubjectCompatNotConfigured, "Subject '%s' does not have subject-level compatibility configured", subject)
	}
	// Confluent answers compatibilityLevel; the same value under
	// "compatibility" lets clients that read that field (hamba's) work too.
	return writeJSON(w, configBody{CompatibilityLevel: string(lvl), Compatibility: string(lvl)})
}

func (r *Registry) putConfig(w http.ResponseWriter, req *http.Request) error {
	subject := subjectParam(req)
	if req.PathValue("subject") != "" || strings.HasPrefix(req.URL.Path, "/config/") {
		if err := validSubject(subject); err != nil {
			return err
		}
	}
	b, err := r.readBody(w, req)
	if err != nil {
		return err
	}
	var body configBody
	if err := json.Unmarshal(b, &body); err != nil {
		return errf(ErrInvalidCompatibilityLevel, "Invalid compatibility level: the body is not JSON: %v", err)
	}
	lvl, err := ParseLevel(body.Compatibility)
	if err != nil {
		return err
	}
	val, _ := json.Marshal(configValue{CompatibilityLevel: lvl})
	err = r.write(req.Context(), func(st *state) ([]*kgo.Record, error) {
		if cur, ok := st.subjectCf[subject]; (subject == "" && st.global == lvl) || (subject != "" && ok && cur == lvl) {
			return nil, nil // already so: nothing to write
		}
		return []*kgo.Record{{Key: configKey(subject), Value: val}}, nil
	})
	if err != nil {
		return err
	}
	return writeJSON(w, configBody{Compatibility: string(lvl)})
}

func (r *Registry) deleteConfig(w http.ResponseWriter, req *http.Request) error {
	subject := subjectParam(req)
	var prev Level
	err := r.write(req.Context(), func(st *state) ([]*kgo.Record, error) {
		if subject == "" {
			prev = st.level("", r.cfg.defaultLevel)
			if st.global == "" {
				return nil, nil
			}
			return []*kgo.Record{{Key: configKey("")}}, nil
		}
		lvl, ok := st.subjectCf[subject]
		if !ok && len(st.versions(subject, true)) == 0 {
			return nil, errf(ErrSubjectNotFound, "Subject '%s' not found.", subject)
		}
		if !ok {
			prev = st.level("", r.cfg.defaultLevel)
			return nil, nil
		}
		prev = lvl
		return []*kgo.Record{{Key: configKey(subject)}}, nil
	})
	if err != nil {
		return err
	}
	return writeJSON(w, configBody{CompatibilityLevel: string(prev), Compatibility: string(prev)})
}

// compatResult is the compatibility endpoints' answer.
type compatResult struct {
	IsCompatible bool     `json:"is_compatible"`
	Messages     []string `json:"messages,omitempty"`
}

func (r *Registry) checkCompat(w http.ResponseWriter, req *http.Request) error {
	subject := subjectParam(req)
	all := req.PathValue("version") == ""
	version, err := versionParam(req)
	if err != nil {
		return err
	}
	p, err := r.schemaBody(w, req)
	if err != nil {
		return err
	}
	r.mu.RLock()
	level := r.st.level(subject, r.cfg.defaultLevel)
	live, lerr := r.st.liveSchemas(subject)
	var against []checkVersion
	if lerr == nil {
		if all || (version == -1 && len(live) == 0) {
			// Confluent (since 7.x, on purpose) answers a check against
			// "latest" of a subject without versions as compatible.
			against = live
		} else {
			var v *schemaValue
			v, lerr = r.resolve(r.st, subject, version, false)
			if lerr == nil {
				for _, c := range live {
					if c.Version == v.Version {
						against = []checkVersion{c}
					}
				}
			}
		}
	}
	r.mu.RUnlock()
	if lerr != nil {
		return lerr
	}
	if !all {
		// One named version: the level's direction, against that version.
		level = Level(strings.TrimSuffix(string(level), "_TRANSITIVE"))
	}
	reasons := check(level, p.avro, against)
	res := compatResult{IsCompatible: len(reasons) == 0}
	if boolParam(req, "verbose") {
		res.Messages = messages(level, reasons)
		if res.Messages == nil {
			res.Messages = []string{}
		}
	}
	return writeJSON(w, res)
}
