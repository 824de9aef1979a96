package registry

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"sync"

	"github.com/hamba/avro/v2"
)

// The records of the _schemas topic. Keys and values are JSON in the shape
// Confluent Schema Registry writes, so the topic reads familiarly:
//
//	{"keytype":"SCHEMA","subject":"s","version":1,"magic":1} → {"subject":"s","version":1,"id":1,"schema":"...","deleted":false}
//	{"keytype":"CONFIG","subject":"s","magic":0}           → {"compatibilityLevel":"FULL"}   (subject null: global)
//	{"keytype":"NOOP","magic":0}                            → written when a writer takes over
//	{"keytype":"ID_WATERMARK","magic":0}                    → {"max_id":7} before a permanent delete, so ids are never reused
//
// A permanent delete writes a tombstone (nil value) on the SCHEMA key; a
// config reset a tombstone on the CONFIG key.
const (
	keySchema    = "SCHEMA"
	keyConfig    = "CONFIG"
	keyNoop      = "NOOP"
	keyWatermark = "ID_WATERMARK"
	// Key types Confluent's registry writes, read so a topic it wrote can
	// be served: DELETE_SUBJECT and CLEAR_SUBJECT are applied, MODE ignored.
	keyDeleteSubject = "DELETE_SUBJECT"
	keyClearSubject  = "CLEAR_SUBJECT"
	keyMode          = "MODE"
)

// recordKey is a _schemas record key. Field order is fixed so equal keys
// are equal bytes, which compaction relies on.
type recordKey struct {
	KeyType string  `json:"keytype"`
	Subject *string `json:"subject,omitempty"`
	Version int     `json:"version,omitempty"`
	Magic   int     `json:"magic"`
}

func schemaKey(subject string, version int) []byte {
	b, _ := json.Marshal(recordKey{KeyType: keySchema, Subject: &subject, Version: version, Magic: 1})
	return b
}

// configKey is the key of a subject's config, or the global one for "".
func configKey(subject string) []byte {
	k := recordKey{KeyType: keyConfig}
	if subject != "" {
		k.Subject = &subject
	}
	if k.Subject == nil {
		b, _ := json.Marshal(struct {
			KeyType string  `json:"keytype"`
			Subject *string `json:"subject"`
			Magic   int     `json:"magic"`
		}{keyConfig, nil, 0})
		return b
	}
	b, _ := json.Marshal(k)
	return b
}

func noopKey() []byte      { b, _ := json.Marshal(recordKey{KeyType: keyNoop}); return b }
func watermarkKey() []byte { b, _ := json.Marshal(recordKey{KeyType: keyWatermark}); return b }

// schemaValue is a registered subject version.
type schemaValue struct {
	Subject string `json:"subject"`
	Version int    `json:"version"`
	ID      int    `json:"id"`
	Schema  string `json:"schema"`
	Deleted bool   `json:"deleted"`
}

type configValue struct {
	CompatibilityLevel Level `json:"compatibilityLevel"`
}

type watermarkValue struct {
	MaxID int `json:"max_id"`
}

// state is the registry's materialized view of the topic. It is changed
// only by apply, under Registry.mu.
type state struct {
	subjects  map[string]map[int]*schemaValue // subject → version → record
	byID      map[int]string                  // id → normalized schema text
	idUses    map[int]int                     // id → number of version records using it
	byText    map[string]int                  // normalized schema text → id
	pmu       sync.Mutex                      // guards parsed: filled by readers too
	parsed    map[int]avro.Schema             // id → parsed schema (own cache each)
	maxID     int
	global    Level // "" means the default
	subjectCf map[string]Level
}

func newState() *state {
	return &state{
		subjects:  map[string]map[int]*schemaValue{},
		byID:      map[int]string{},
		idUses:    map[int]int{},
		byText:    map[string]int{},
		parsed:    map[int]avro.Schema{},
		subjectCf: map[string]Level{},
	}
}

// apply folds one record into the state. A record it cannot decode is
// reported and skipped: the registry never stops reading its log.
func (s *state) apply(key, value []byte) error {
	var k recordKey
	if err := json.Unmarshal(key, &k); err != nil {
		return fmt.Errorf("decode key %q: %w", key, err)
	}
	switch k.KeyType {
	case keySchema:
		if k.Subject == nil {
			return fmt.Errorf("schema key %q has no subject", key)
		}
		if value == nil {
			s.remove(*k.Subject, k.Version)
			return nil
		}
		var v schemaValue
		if err := json.Unmarshal(value, &v); err != nil {
			return fmt.Errorf("decode schema value for %s: %w", key, err)
		}
		if v.ID <= 0 || v.Version <= 0 || v.Subject != *k.Subject {
			return fmt.Errorf("schema value for %s is inconsistent: %s", key, value)
		}
		s.put(&v)
	case keyConfig:
		subject := ""
		if k.Subject != nil {
			subject = *k.Subject
		}
		var lvl Level
		if value != nil {
			var v configValue
			if err := json.Unmarshal(value, &v); err != nil {
				return fmt.Errorf("decode config value for %s: %w", key, err)
			}
			l, err := ParseLevel(string(v.CompatibilityLevel))
			if err != nil {
				return fmt.Errorf("config value for %s: %w", key, err)
			}
			lvl = l
		}
		if subject == "" {
			s.global = lvl
		} else if lvl == "" {
			delete(s.subjectCf, subject)
		} else {
			s.subjectCf[subject] = lvl
		}
	case keyWatermark:
		if value == nil {
			return nil
		}
		var v watermarkValue
		if err := json.Unmarshal(value, &v); err != nil {
			return fmt.Errorf("decode id watermark: %w", err)
		}
		s.maxID = max(s.maxID, v.MaxID)
	case keyDeleteSubject, keyClearSubject:
		// Written by Confluent's registry: soft (DELETE_SUBJECT) or hard
		// (CLEAR_SUBJECT) delete of a subject's versions up to a version.
		if k.Subject == nil || value == nil {
			return nil
		}
		var v struct {
			Version int `json:"version"`
		}
		if err := json.Unmarshal(value, &v); err != nil {
			return fmt.Errorf("decode %s value: %w", k.KeyType, err)
		}
		for _, sv := range s.versions(*k.Subject, true) {
			if sv.Version > v.Version {
				continue
			}
			if k.KeyType == keyClearSubject {
				s.remove(sv.Subject, sv.Version)
			} else {
				nv := *sv
				nv.Deleted = true
				s.put(&nv)
			}
		}
	case keyNoop, keyMode:
	default:
		return fmt.Errorf("unknown key type %q", k.KeyType)
	}
	return nil
}

func (s *state) put(v *schemaValue) {
	vs := s.subjects[v.Subject]
	if vs == nil {
		vs = map[int]*schemaValue{}
		s.subjects[v.Subject] = vs
	}
	if old := vs[v.Version]; old != nil {
		s.unuse(old.ID)
	}
	vs[v.Version] = v
	s.idUses[v.ID]++
	if _, ok := s.byID[v.ID]; !ok {
		s.byID[v.ID] = v.Schema
	}
	if _, ok := s.byText[v.Schema]; !ok {
		s.byText[v.Schema] = v.ID
	}
	s.maxID = max(s.maxID, v.ID)
}

func (s *state) remove(subject string, version int) {
	vs := s.subjects[subject]
	if vs == nil || vs[version] == nil {
		return
	}
	s.unuse(vs[version].ID)
	delete(vs, version)
	if len(vs) == 0 {
		delete(s.subjects, subject)
	}
}

func (s *state) unuse(id int) {
	s.idUses[id]--
	if s.idUses[id] > 0 {
		return
	}
	delete(s.idUses, id)
	if t, ok := s.byID[id]; ok && s.byText[t] == id {
		delete(s.byText, t)
	}
	delete(s.byID, id)
	s.pmu.Lock()
	delete(s.parsed, id)
	s.pmu.Unlock()
}

// schema returns the parsed schema of id.
func (s *state) schema(id int) (avro.Schema, error) {
	s.pmu.Lock()
	defer s.pmu.Unlock()
	if p, ok := s.parsed[id]; ok {
		return p, nil
	}
	text, ok := s.byID[id]
	if !ok {
		return nil, errf(ErrSchemaNotFound, "Schema %d not found", id)
	}
	p, err := Parse(text)
	if err != nil {
		return nil, fmt.Errorf("stored schema %d does not parse: %w", id, err)
	}
	s.parsed[id] = p
	return p, nil
}

// versions lists a subject's versions, ascending; with deleted, soft-deleted
// ones too.
func (s *state) versions(subject string, deleted bool) []*schemaValue {
	var out []*schemaValue
	for _, v := range s.subjects[subject] {
		if deleted || !v.Deleted {
			out = append(out, v)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	return out
}

// subjectNames lists subjects with a live version (or any, with deleted).
func (s *state) subjectNames(deleted bool) []string {
	out := []string{}
	for name := range s.subjects {
		if len(s.versions(name, deleted)) > 0 {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// level is the compatibility level in force for subject.
func (s *state) level(subject string, def Level) Level {
	if l, ok := s.subjectCf[subject]; ok && subject != "" {
		return l
	}
	if s.global != "" {
		return s.global
	}
	return def
}
