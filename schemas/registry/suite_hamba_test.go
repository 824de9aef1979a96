package registry_test

import (
	"errors"
	"slices"
	"testing"

	"github.com/hamba/avro/v2/registry"
)

func hambaCode(err error) int {
	var e registry.Error
	if errors.As(err, &e) {
		return e.Code
	}
	return 0
}

// TestSuiteHamba drives the registry with hamba's registry client.
func TestSuiteHamba(t *testing.T) {
	t.Parallel()
	in := newBackend(t).start(t)
	ctx := t.Context()
	cl, err := registry.NewClient(in.url)
	if err != nil {
		t.Fatal(err)
	}
	const subj = "hamba-value"
	id1, _, err := cl.CreateSchema(ctx, subj, userV1)
	if err != nil {
		t.Fatalf("create v1: %v", err)
	}
	id2, _, err := cl.CreateSchema(ctx, subj, userV2)
	if err != nil || id2 == id1 {
		t.Fatalf("create v2: %d, %v", id2, err)
	}
	if ok, err := cl.IsCompatible(ctx, subj, userV3); err != nil || ok {
		t.Errorf("IsCompatible(v3) = %v, %v; want false", ok, err)
	}
	if _, _, err := cl.CreateSchema(ctx, subj, userV3); hambaCode(err) != 409 {
		t.Errorf("create v3: %v; want 409", err)
	}
	s, err := cl.GetSchema(ctx, id2)
	if err != nil || s.(interface{ String() string }).String() == "" {
		t.Errorf("GetSchema(%d): %v", id2, err)
	}
	if _, err := cl.GetSchema(ctx, 4242); hambaCode(err) != 40403 {
		t.Errorf("GetSchema(4242): %v; want 40403", err)
	}
	if subs, err := cl.GetSubjects(ctx); err != nil || !slices.Equal(subs, []string{subj}) {
		t.Errorf("GetSubjects = %v, %v", subs, err)
	}
	if vs, err := cl.GetVersions(ctx, subj); err != nil || !slices.Equal(vs, []int{1, 2}) {
		t.Errorf("GetVersions = %v, %v", vs, err)
	}
	if _, err := cl.GetSchemaByVersion(ctx, subj, 1); err != nil {
		t.Errorf("GetSchemaByVersion: %v", err)
	}
	info, err := cl.GetLatestSchemaInfo(ctx, subj)
	if err != nil || info.ID != id2 || info.Version != 2 {
		t.Errorf("GetLatestSchemaInfo = %+v, %v", info, err)
	}
	if id, _, err := cl.IsRegistered(ctx, subj, userV1); err != nil || id != id1 {
		t.Errorf("IsRegistered(v1) = %d, %v; want %d", id, err, id1)
	}
	if _, _, err := cl.IsRegistered(ctx, subj, userV3); hambaCode(err) != 40403 {
		t.Errorf("IsRegistered(v3): %v; want 40403", err)
	}
	if err := cl.SetGlobalCompatibilityLevel(ctx, registry.FullCL); err != nil {
		t.Errorf("SetGlobalCompatibilityLevel: %v", err)
	}
	if l, err := cl.GetGlobalCompatibilityLevel(ctx); err != nil || l != registry.FullCL {
		t.Errorf("GetGlobalCompatibilityLevel = %q, %v", l, err)
	}
	if err := cl.SetCompatibilityLevel(ctx, subj, registry.NoneCL); err != nil {
		t.Errorf("SetCompatibilityLevel: %v", err)
	}
	if l, err := cl.GetCompatibilityLevel(ctx, subj); err != nil || l != registry.NoneCL {
		t.Errorf("GetCompatibilityLevel = %q, %v", l, err)
	}
	if ok, err := cl.IsCompatible(ctx, subj, userV3); err != nil || !ok {
		t.Errorf("IsCompatible(v3) under NONE = %v, %v; want true", ok, err)
	}
	if vs, err := cl.DeleteSubject(ctx, subj); err != nil || !slices.Equal(vs, []int{1, 2}) {
		t.Errorf("DeleteSubject = %v, %v", vs, err)
	}
	if _, err := cl.DeleteSubject(ctx, subj); hambaCode(err) != 40404 {
		t.Errorf("DeleteSubject again: %v; want 40404", err)
	}
	if _, err := cl.GetVersions(ctx, subj); hambaCode(err) != 40401 {
		t.Errorf("GetVersions after delete: %v; want 40401", err)
	}
}
