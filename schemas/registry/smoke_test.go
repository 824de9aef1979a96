package registry_test

import (
	"testing"

	"github.com/twmb/franz-go/pkg/sr"
)

func TestSmoke(t *testing.T) {
	t.Parallel()
	b := newBackend(t)
	a := b.start(t)
	ctx := t.Context()
	s1 := sr.Schema{Schema: `{"type":"record","name":"R","fields":[{"name":"a","type":"int"}]}`}
	ss, err := a.sr.CreateSchema(ctx, "s-value", s1)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", ss)
	c := b.start(t)
	got, err := c.sr.SchemaByVersion(ctx, "s-value", -1)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", got)
	s2 := sr.Schema{Schema: `{"type":"record","name":"R","fields":[{"name":"a","type":"int"},{"name":"b","type":"int","default":0}]}`}
	id2, err := c.sr.RegisterSchema(ctx, "s-value", s2, -1, -1)
	t.Logf("c wrote %d %v", id2, err)
	s3 := sr.Schema{Schema: `{"type":"record","name":"R","fields":[{"name":"a","type":"int"},{"name":"c","type":"int","default":0}]}`}
	id3, err := a.sr.RegisterSchema(ctx, "s-value", s3, -1, -1)
	t.Logf("a wrote %d %v", id3, err)
	vs, err := c.sr.SubjectVersions(ctx, "s-value")
	t.Logf("%v %v", vs, err)
}
