package pipeline

import (
	"encoding/binary"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/spinerun/spine/internal/textclip"
)

// Dead-letter headers, in Spring Kafka's style (DeadLetterPublishingRecoverer)
// so Spring tooling reads Spine's dead letters, plus Spine's own x- headers.
//
// Encoding, chosen to match Spring: topic, consumer group, exception message
// and class are UTF-8 strings; the partition is a 4-byte big-endian int32;
// offset and timestamp (milliseconds since the epoch) are 8-byte big-endian
// int64s. ParseDeadLetter decodes them.
const (
	HeaderDLTOriginalTopic         = "kafka_dlt-original-topic"
	HeaderDLTOriginalPartition     = "kafka_dlt-original-partition"
	HeaderDLTOriginalOffset        = "kafka_dlt-original-offset"
	HeaderDLTOriginalTimestamp     = "kafka_dlt-original-timestamp"
	HeaderDLTOriginalTimestampType = "kafka_dlt-original-timestamp-type"
	HeaderDLTOriginalGroup         = "kafka_dlt-original-consumer-group"
	HeaderDLTExceptionMessage      = "kafka_dlt-exception-message"
	HeaderDLTExceptionFQCN         = "kafka_dlt-exception-fqcn"
	// HeaderErrorCode is the stable code of the error (see Coded).
	HeaderErrorCode = "x-error-code"
	// HeaderProcessor names the processor that dead-lettered the record.
	HeaderProcessor = "x-processor"
)

// maxDLQMessage bounds the exception message header.
const maxDLQMessage = 1024

// DeadLetter is a dead-lettered record as read back from the DLQ.
type DeadLetter struct {
	Topic     Topic
	Partition int32
	Offset    int64
	Timestamp time.Time
	Group     string
	Message   string
	ErrorType string
	Code      string
	Processor string
	// Key and Value are the original bytes, unchanged.
	Key, Value []byte
}

// DeadLetterRecord builds the DLQ record for a poison input: the original
// key, value and headers unchanged, plus the dead-letter headers. It is the
// one dead-letter writer of the program (the loop's, for every processor,
// the projections' batch handler included), so every dead letter reads
// back with ParseDeadLetter.
func DeadLetterRecord(dlq Topic, group, processor string, r *kgo.Record, cause error) *kgo.Record {
	code := CodeOf(cause)
	if code == "" {
		code = "unknown"
	}
	var part [4]byte
	binary.BigEndian.PutUint32(part[:], uint32(r.Partition))
	var off, ts [8]byte
	binary.BigEndian.PutUint64(off[:], uint64(r.Offset))
	binary.BigEndian.PutUint64(ts[:], uint64(r.Timestamp.UnixMilli()))
	hs := make([]kgo.RecordHeader, 0, len(r.Headers)+10)
	for _, h := range r.Headers {
		if strings.HasPrefix(h.Key, "kafka_dlt-") || h.Key == HeaderErrorCode || h.Key == HeaderProcessor {
			continue // a record dead-lettered twice carries only the latest reason
		}
		hs = append(hs, h)
	}
	hs = append(hs,
		kgo.RecordHeader{Key: HeaderDLTOriginalTopic, Value: []byte(r.Topic)},
		kgo.RecordHeader{Key: HeaderDLTOriginalPartition, Value: part[:]},
		kgo.RecordHeader{Key: HeaderDLTOriginalOffset, Value: off[:]},
		kgo.RecordHeader{Key: HeaderDLTOriginalTimestamp, Value: ts[:]},
		kgo.RecordHeader{Key: HeaderDLTOriginalTimestampType, Value: []byte("CreateTime")},
		kgo.RecordHeader{Key: HeaderDLTOriginalGroup, Value: []byte(group)},
		kgo.RecordHeader{Key: HeaderDLTExceptionMessage, Value: []byte(textclip.Clip(cause.Error(), maxDLQMessage))},
		kgo.RecordHeader{Key: HeaderDLTExceptionFQCN, Value: []byte(errorType(cause))},
		kgo.RecordHeader{Key: HeaderErrorCode, Value: []byte(code)},
		kgo.RecordHeader{Key: HeaderProcessor, Value: []byte(processor)},
	)
	return &kgo.Record{Topic: string(dlq), Key: r.Key, Value: r.Value, Headers: hs}
}

// errorType names the innermost coded error's Go type, the analogue of
// Spring's exception class name.
func errorType(err error) string {
	var c Coded
	if errors.As(err, &c) {
		return reflect.TypeOf(c).String()
	}
	return reflect.TypeOf(err).String()
}

// ErrNotDeadLetter is returned by ParseDeadLetter for a record without the
// dead-letter headers.
var ErrNotDeadLetter = errors.New("not a dead letter: kafka_dlt-original-topic header missing")

// ParseDeadLetter decodes the dead-letter headers of a record read from the
// DLQ.
func ParseDeadLetter(r *kgo.Record) (DeadLetter, error) {
	d := DeadLetter{Key: r.Key, Value: r.Value}
	var seen bool
	for _, h := range r.Headers {
		switch h.Key {
		case HeaderDLTOriginalTopic:
			d.Topic, seen = Topic(h.Value), true
		case HeaderDLTOriginalPartition:
			if len(h.Value) != 4 {
				return d, fmt.Errorf("dead letter: %s is %d bytes, want 4", h.Key, len(h.Value))
			}
			d.Partition = int32(binary.BigEndian.Uint32(h.Value))
		case HeaderDLTOriginalOffset:
			if len(h.Value) != 8 {
				return d, fmt.Errorf("dead letter: %s is %d bytes, want 8", h.Key, len(h.Value))
			}
			d.Offset = int64(binary.BigEndian.Uint64(h.Value))
		case HeaderDLTOriginalTimestamp:
			if len(h.Value) != 8 {
				return d, fmt.Errorf("dead letter: %s is %d bytes, want 8", h.Key, len(h.Value))
			}
			d.Timestamp = time.UnixMilli(int64(binary.BigEndian.Uint64(h.Value)))
		case HeaderDLTOriginalGroup:
			d.Group = string(h.Value)
		case HeaderDLTExceptionMessage:
			d.Message = string(h.Value)
		case HeaderDLTExceptionFQCN:
			d.ErrorType = string(h.Value)
		case HeaderErrorCode:
			d.Code = string(h.Value)
		case HeaderProcessor:
			d.Processor = string(h.Value)
		}
	}
	if !seen {
		return d, ErrNotDeadLetter
	}
	return d, nil
}
