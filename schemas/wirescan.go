package schemas

import (
	"errors"
	"fmt"
	"math"
	"unicode/utf8"

	"github.com/hamba/avro/v2"
)

// maxScanDepth bounds how deeply nested records, unions and collections may
// be on the wire.
const maxScanDepth = 64

// scanBody walks an Avro body against its writer schema before anything is
// decoded from it, and returns the number of bytes the body takes. It reads
// every length, count and index once, allocates nothing, and classifies what
// is wrong with a stable code: a length past the end is truncated, one over
// max is too_large, a negative length or an out-of-range enum or union
// index is malformed, a string that is not UTF-8 (field, map key or value,
// in any field, skipped or not) is invalid_utf8. Work is bounded by len(b):
// every collection entry is counted against max.
//
// hamba/avro trusts block counts when it skips a field the reader lacks (a
// count of 2^62 loops 2^62 times), and its Unmarshal ignores trailing bytes;
// the scan closes both holes.
func scanBody(s avro.Schema, b []byte, max int) (int, *DecodeError) {
	w := wireScanner{b: b, max: max}
	if err := w.walk(s, 0); err != nil {
		return w.pos, err
	}
	return w.pos, nil
}

type wireScanner struct {
	b     []byte
	pos   int
	max   int
	items int // collection entries seen, bounded by max
}

func scanErr(code ErrorCode, format string, args ...any) *DecodeError {
	return &DecodeError{Code: code, Err: fmt.Errorf(format, args...)}
}

var errVarintEOF = errors.New("varint runs past the end")

func (w *wireScanner) varint(maxBytes int) (int64, *DecodeError) {
	var u uint64
	var shift uint
	for i := 0; i < maxBytes; i++ {
		if w.pos >= len(w.b) {
			return 0, &DecodeError{Code: CodeTruncated, Err: fmt.Errorf("at byte %d: %w", w.pos, errVarintEOF)}
		}
		c := w.b[w.pos]
		w.pos++
		u |= uint64(c&0x7f) << shift
		if c&0x80 == 0 {
			return int64(u>>1) ^ -int64(u&1), nil
		}
		shift += 7
	}
	return 0, scanErr(CodeMalformed, "at byte %d: varint longer than %d bytes", w.pos, maxBytes)
}

func (w *wireScanner) long() (int64, *DecodeError) { return w.varint(10) }

func (w *wireScanner) int() (int64, *DecodeError) {
	v, err := w.varint(5)
	if err == nil && (v < math.MinInt32 || v > math.MaxInt32) {
		return 0, scanErr(CodeMalformed, "at byte %d: int %d out of range", w.pos, v)
	}
	return v, err
}

// need checks that n more bytes exist, classifying a shortfall.
func (w *wireScanner) need(n int64, what string) *DecodeError {
	switch {
	case n < 0:
		return scanErr(CodeMalformed, "at byte %d: negative %s length %d", w.pos, what, n)
	case n > int64(w.max):
		return scanErr(CodeTooLarge, "at byte %d: %s length %d over the bound of %d bytes", w.pos, what, n, w.max)
	case n > int64(len(w.b)-w.pos):
		return scanErr(CodeTruncated, "at byte %d: %s of %d bytes but only %d left", w.pos, what, n, len(w.b)-w.pos)
	}
	return nil
}

func (w *wireScanner) walk(s avro.Schema, depth int) *DecodeError {
	if depth > maxScanDepth {
		return scanErr(CodeTooLarge, "nesting deeper than %d", maxScanDepth)
	}
	switch s.Type() {
	case avro.Null:
		return nil
	case avro.Boolean:
		if err := w.need(1, "boolean"); err != nil {
			return err
		}
		if c := w.b[w.pos]; c > 1 {
			return scanErr(CodeMalformed, "at byte %d: boolean byte %d", w.pos, c)
		}
		w.pos++
		return nil
	case avro.Int:
		_, err := w.int()
		return err
	case avro.Long:
		_, err := w.long()
		return err
	case avro.Float:
		return w.skip(4, "float")
	case avro.Double:
		return w.skip(8, "double")
	case avro.Bytes:
		n, err := w.long()
		if err != nil {
			return err
		}
		return w.skip(n, "bytes")
	case avro.String:
		return w.str("string")
	case avro.Fixed:
		return w.skip(int64(s.(*avro.FixedSchema).Size()), "fixed")
	case avro.Enum:
		i, err := w.int()
		if err != nil {
			return err
		}
		if syms := s.(*avro.EnumSchema).Symbols(); i < 0 || i >= int64(len(syms)) {
			return scanErr(CodeMalformed, "at byte %d: enum %s index %d of %d symbols", w.pos, s.(*avro.EnumSchema).FullName(), i, len(syms))
		}
		return nil
	case avro.Union:
		i, err := w.long()
		if err != nil {
			return err
		}
		types := s.(*avro.UnionSchema).Types()
		if i < 0 || i >= int64(len(types)) {
			return scanErr(CodeMalformed, "at byte %d: union index %d of %d branches", w.pos, i, len(types))
		}
		return w.walk(types[i], depth+1)
	case avro.Record:
		for _, f := range s.(*avro.RecordSchema).Fields() {
			if err := w.walk(f.Type(), depth+1); err != nil {
				return err
			}
		}
		return nil
	case avro.Ref:
		return w.walk(s.(*avro.RefSchema).Schema(), depth+1)
	case avro.Array:
		return w.blocks(func() *DecodeError { return w.walk(s.(*avro.ArraySchema).Items(), depth+1) })
	case avro.Map:
		return w.blocks(func() *DecodeError {
			if err := w.str("map key"); err != nil {
				return err
			}
			return w.walk(s.(*avro.MapSchema).Values(), depth+1)
		})
	}
	return scanErr(CodeMalformed, "unsupported schema type %s", s.Type())
}

func (w *wireScanner) skip(n int64, what string) *DecodeError {
	if err := w.need(n, what); err != nil {
		return err
	}
	w.pos += int(n)
	return nil
}

func (w *wireScanner) str(what string) *DecodeError {
	n, err := w.long()
	if err != nil {
		return err
	}
	if err := w.need(n, what); err != nil {
		return err
	}
	if !utf8.Valid(w.b[w.pos : w.pos+int(n)]) {
		return scanErr(CodeInvalidUTF8, "at byte %d: %s of %d bytes is not valid UTF-8", w.pos, what, n)
	}
	w.pos += int(n)
	return nil
}

// blocks walks Avro array/map blocks: a count (negative: followed by the
// block's byte size, which must be the entries' size), the entries, until a
// zero count.
func (w *wireScanner) blocks(entry func() *DecodeError) *DecodeError {
	for {
		count, err := w.long()
		if err != nil {
			return err
		}
		if count == 0 {
			return nil
		}
		size := int64(-1)
		if count < 0 {
			if count == math.MinInt64 {
				return scanErr(CodeMalformed, "at byte %d: block count %d", w.pos, count)
			}
			count = -count
			if size, err = w.long(); err != nil {
				return err
			}
			if err := w.need(size, "block"); err != nil {
				return err
			}
		}
		if count > int64(w.max-w.items) {
			return scanErr(CodeTooLarge, "at byte %d: block of %d entries over the bound of %d", w.pos, count, w.max)
		}
		w.items += int(count)
		start := w.pos
		for range count {
			if err := entry(); err != nil {
				return err
			}
		}
		// A decoder may skip a sized block by its size rather than by its
		// entries (hamba/avro does, for a field the reader lacks): both
		// readings must land on the same byte, or the decoder goes on from
		// inside the block and trusts whatever counts it finds there.
		if size >= 0 && int64(w.pos-start) != size {
			return scanErr(CodeMalformed, "at byte %d: block says %d bytes, its %d entries take %d", start, size, count, w.pos-start)
		}
	}
}
