package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/hamba/avro/v2"
	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/spinerun/spine/cmd/spine/stack"
	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/schemas"
	"github.com/spinerun/spine/schemas/registry"
)

// schemasTimeout bounds every `spine schemas` command.
const schemasTimeout = 30 * time.Second

func newSchemasCmd(a *app) *cobra.Command {
	var url string
	cmd := &cobra.Command{
		Use:   "schemas",
		Short: "List, get, register, check and diff contracts in the schema registry",
		Long: `Work with the schema registry: SCHEMA_REGISTRY_URL, or the one 'spine up'
serves on SPINE_REGISTRY_ADDR (override with --registry). Subjects follow the
TopicNameStrategy: <topic>-value. A file named like Spine's contracts
(intent.vN.avsc, runtime_event.vN.avsc) maps to every subject of that
contract; other files need --subject.

'spine schemas check' exits 1 with the reasons, naming the field, when a local
.avsc is incompatible with what the registry holds: use it as a CI gate.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return usageError{errors.New("spine schemas needs a subcommand: list, get, register, check or diff")}
		},
	}
	cmd.PersistentFlags().StringVar(&url, "registry", "", "schema registry URL (default SCHEMA_REGISTRY_URL, else the local 'spine up' registry)")
	client := func(cmd *cobra.Command) (*schemasCtx, error) {
		cfg, err := a.config(cmd.Context())
		if err != nil {
			return nil, err
		}
		u := url
		if u == "" {
			u = cliRegistryURL(cfg)
		}
		cl, err := newSRClient(cfg, u)
		if err != nil {
			return nil, err
		}
		return &schemasCtx{a: a, cfg: cfg, cl: cl, url: u}, nil
	}
	run := func(fn func(context.Context, *schemasCtx, []string) error) func(*cobra.Command, []string) error {
		return func(cmd *cobra.Command, args []string) error {
			sc, err := client(cmd)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), schemasTimeout)
			defer cancel()
			return fn(ctx, sc, args)
		}
	}

	var deleted bool
	list := &cobra.Command{
		Use:   "list",
		Short: "List subjects with their latest version, id and compatibility level",
		Args:  cobra.NoArgs,
		RunE:  run(func(ctx context.Context, sc *schemasCtx, _ []string) error { return sc.list(ctx, deleted) }),
	}
	list.Flags().BoolVar(&deleted, "deleted", false, "include soft-deleted subjects")

	var byID int
	get := &cobra.Command{
		Use:   "get <subject> [version|latest] | get --id N",
		Short: "Print a schema (pretty JSON) by subject and version, or by id",
		Args:  cobra.RangeArgs(0, 2),
		RunE: run(func(ctx context.Context, sc *schemasCtx, args []string) error {
			return sc.get(ctx, args, byID)
		}),
	}
	get.Flags().IntVar(&byID, "id", 0, "get the schema with this global id")

	var subject string
	register := &cobra.Command{
		Use:   "register [--subject S] [file.avsc...]",
		Short: "Register .avsc files; with no file, Spine's contracts under FULL_TRANSITIVE",
		RunE: run(func(ctx context.Context, sc *schemasCtx, args []string) error {
			return sc.register(ctx, subject, args)
		}),
	}
	register.Flags().StringVar(&subject, "subject", "", "subject to register under (default: from the file name)")

	check := &cobra.Command{
		Use:   "check [--subject S] file.avsc...",
		Short: "Check local .avsc files against the registry; exit 1 with reasons if incompatible",
		Args:  cobra.MinimumNArgs(1),
		RunE: run(func(ctx context.Context, sc *schemasCtx, args []string) error {
			return sc.check(ctx, subject, args)
		}),
	}
	check.Flags().StringVar(&subject, "subject", "", "subject to check against (default: from the file name)")

	diff := &cobra.Command{
		Use:   "diff <subject> <from> [to]",
		Short: "Field-level diff between two versions (a number, latest, or a local .avsc); to defaults to latest",
		Args:  cobra.RangeArgs(2, 3),
		RunE: run(func(ctx context.Context, sc *schemasCtx, args []string) error {
			return sc.diff(ctx, args)
		}),
	}
	cmd.AddCommand(list, get, register, check, diff)
	return cmd
}

// schemasCtx is what every schemas subcommand uses.
type schemasCtx struct {
	a   *app
	cfg *stack.Config
	cl  *sr.Client
	url string
}

func (sc *schemasCtx) unreachable(err error) error {
	var re *sr.ResponseError
	if errors.As(err, &re) {
		return err
	}
	return fmt.Errorf("is the schema registry at %s reachable? (start it with `spine up` or set SCHEMA_REGISTRY_URL): %w", sc.url, err)
}

func (sc *schemasCtx) list(ctx context.Context, deleted bool) error {
	if deleted {
		ctx = sr.WithParams(ctx, sr.ShowDeleted)
	}
	subjects, err := sc.cl.Subjects(ctx)
	if err != nil {
		return sc.unreachable(err)
	}
	tw := tabwriter.NewWriter(sc.a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SUBJECT\tVERSION\tID\tCOMPATIBILITY")
	for _, s := range subjects {
		ss, err := sc.cl.SchemaByVersion(ctx, s, -1)
		if err != nil {
			return fmt.Errorf("latest version of %s: %w", s, err)
		}
		lvl := "?"
		if r := sc.cl.Compatibility(sr.WithParams(ctx, sr.DefaultToGlobal), s); r[0].Err == nil {
			lvl = r[0].Level.String()
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\n", s, ss.Version, ss.ID, lvl)
	}
	return tw.Flush()
}

func parseVersionArg(s string) (int, error) {
	if s == "latest" {
		return -1, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		return 0, usageError{fmt.Errorf("version %q is not a positive number or latest", s)}
	}
	return n, nil
}

func (sc *schemasCtx) get(ctx context.Context, args []string, id int) error {
	var text string
	switch {
	case id > 0 && len(args) == 0:
		s, err := sc.cl.SchemaByID(ctx, id)
		if err != nil {
			return sc.unreachable(err)
		}
		text = s.Schema
	case id == 0 && len(args) > 0:
		v := -1
		if len(args) == 2 {
			n, err := parseVersionArg(args[1])
			if err != nil {
				return err
			}
			v = n
		}
		ss, err := sc.cl.SchemaByVersion(ctx, args[0], v)
		if err != nil {
			return sc.unreachable(err)
		}
		fmt.Fprintf(sc.a.stderr, "subject %s version %d id %d\n", ss.Subject, ss.Version, ss.ID)
		text = ss.Schema.Schema
	default:
		return usageError{errors.New("give a subject (and optionally a version), or --id")}
	}
	var b bytes.Buffer
	if err := json.Indent(&b, []byte(text), "", "  "); err != nil {
		b.Reset()
		b.WriteString(text)
	}
	b.WriteByte('\n')
	_, err := sc.a.stdout.Write(b.Bytes())
	return err
}

// subjectsFor returns the subjects a local file is checked or registered
// under: --subject, or every subject of the contract the file name names.
func (sc *schemasCtx) subjectsFor(file, subject string) ([]string, error) {
	if subject != "" {
		return []string{subject}, nil
	}
	base := filepath.Base(file)
	for _, c := range schemas.Contracts {
		if strings.HasPrefix(base, string(c)+".v") && strings.HasSuffix(base, ".avsc") {
			var out []string
			for s, sc := range pipeline.NewLayout(&sc.cfg.Config).ContractSubjects() {
				if sc == c {
					out = append(out, s)
				}
			}
			sort.Strings(out)
			return out, nil
		}
	}
	return nil, usageError{fmt.Errorf("cannot tell the subject of %s from its name; pass --subject", file)}
}

func readAvsc(file string) (string, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return "", err
	}
	if _, err := registry.Parse(string(b)); err != nil {
		return "", fmt.Errorf("%s is not a valid Avro schema: %w", file, err)
	}
	return string(b), nil
}

func (sc *schemasCtx) register(ctx context.Context, subject string, files []string) error {
	if len(files) == 0 {
		if subject != "" {
			return usageError{errors.New("--subject needs .avsc files")}
		}
		ids, err := schemas.RegisterContracts(ctx, sc.cl, pipeline.NewLayout(&sc.cfg.Config).ContractSubjects())
		if err != nil {
			return sc.unreachable(err)
		}
		names := make([]string, 0, len(ids))
		for s := range ids {
			names = append(names, s)
		}
		sort.Strings(names)
		tw := tabwriter.NewWriter(sc.a.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "SUBJECT\tV1 ID\tV2 ID")
		for _, s := range names {
			fmt.Fprintf(tw, "%s\t%d\t%d\n", s, ids[s][schemas.V1], ids[s][schemas.V2])
		}
		return tw.Flush()
	}
	for _, f := range files {
		text, err := readAvsc(f)
		if err != nil {
			return err
		}
		subjects, err := sc.subjectsFor(f, subject)
		if err != nil {
			return err
		}
		for _, s := range subjects {
			ss, err := sc.cl.CreateSchema(ctx, s, sr.Schema{Schema: text, Type: sr.TypeAvro})
			if err != nil {
				var re *sr.ResponseError
				if errors.As(err, &re) && re.ErrorCode == 409 {
					return exitCodeError{code: 1, err: fmt.Errorf("%s refused under %s: %s", f, s, re.Message)}
				}
				return sc.unreachable(err)
			}
			fmt.Fprintf(sc.a.stdout, "%s\tversion %d\tid %d\t%s\n", s, ss.Version, ss.ID, f)
		}
	}
	return nil
}

func (sc *schemasCtx) check(ctx context.Context, subject string, files []string) error {
	bad := 0
	for _, f := range files {
		text, err := readAvsc(f)
		if err != nil {
			return exitCodeError{code: 1, err: err}
		}
		subjects, err := sc.subjectsFor(f, subject)
		if err != nil {
			return err
		}
		for _, s := range subjects {
			res, err := sc.cl.CheckCompatibility(sr.WithParams(ctx, sr.Verbose), s, -2, sr.Schema{Schema: text, Type: sr.TypeAvro})
			if err != nil {
				return sc.unreachable(err)
			}
			if res.Is {
				fmt.Fprintf(sc.a.stdout, "ok\t%s\t%s\n", s, f)
				continue
			}
			bad++
			fmt.Fprintf(sc.a.stdout, "INCOMPATIBLE\t%s\t%s\n", s, f)
			for _, m := range res.Messages {
				fmt.Fprintf(sc.a.stdout, "  %s\n", m)
			}
		}
	}
	if bad > 0 {
		return exitCodeError{code: 1, err: fmt.Errorf("%d subject(s) would refuse the schema; see the reasons above", bad)}
	}
	return nil
}

// resolveSide loads one side of a diff: a local file or a registered version.
func (sc *schemasCtx) resolveSide(ctx context.Context, subject, side string) (string, string, error) {
	if strings.HasSuffix(side, ".avsc") {
		text, err := readAvsc(side)
		return text, side, err
	}
	v, err := parseVersionArg(side)
	if err != nil {
		return "", "", err
	}
	ss, err := sc.cl.SchemaByVersion(sr.WithParams(ctx, sr.ShowDeleted), subject, v)
	if err != nil {
		return "", "", sc.unreachable(err)
	}
	return ss.Schema.Schema, fmt.Sprintf("%s version %d (id %d)", subject, ss.Version, ss.ID), nil
}

func (sc *schemasCtx) diff(ctx context.Context, args []string) error {
	to := "latest"
	if len(args) == 3 {
		to = args[2]
	}
	fromText, fromName, err := sc.resolveSide(ctx, args[0], args[1])
	if err != nil {
		return err
	}
	toText, toName, err := sc.resolveSide(ctx, args[0], to)
	if err != nil {
		return err
	}
	a, err := registry.Parse(fromText)
	if err != nil {
		return err
	}
	b, err := registry.Parse(toText)
	if err != nil {
		return err
	}
	fmt.Fprintf(sc.a.stdout, "--- %s\n+++ %s\n", fromName, toName)
	lines := diffSchemas(a, b)
	if len(lines) == 0 {
		fmt.Fprintln(sc.a.stdout, "(no field-level differences)")
	}
	for _, l := range lines {
		fmt.Fprintln(sc.a.stdout, l)
	}
	return nil
}

// diffSchemas lists field-level differences from a to b: "+ field" added,
// "- field" removed, "~ field" changed type or default, nested records
// walked with dotted names, enum symbols compared.
func diffSchemas(a, b avro.Schema) []string {
	var out []string
	diffAt("", a, b, &out, map[string]bool{})
	return out
}

func derefSchema(s avro.Schema) avro.Schema {
	if r, ok := s.(*avro.RefSchema); ok {
		return r.Schema()
	}
	return s
}

func label(s avro.Schema) string {
	s = derefSchema(s)
	switch t := s.(type) {
	case avro.NamedSchema:
		return string(s.Type()) + " " + t.FullName()
	case *avro.ArraySchema:
		return "array<" + label(t.Items()) + ">"
	case *avro.MapSchema:
		return "map<" + label(t.Values()) + ">"
	case *avro.UnionSchema:
		var parts []string
		for _, u := range t.Types() {
			parts = append(parts, label(u))
		}
		return "[" + strings.Join(parts, ", ") + "]"
	case *avro.PrimitiveSchema:
		if t.Logical() != nil {
			return string(s.Type()) + "(" + string(t.Logical().Type()) + ")"
		}
	}
	return string(s.Type())
}

func defaultOf(f *avro.Field) string {
	if !f.HasDefault() {
		return "none"
	}
	b, err := json.Marshal(f.Default())
	if err != nil {
		return fmt.Sprint(f.Default())
	}
	return string(b)
}

func diffAt(prefix string, a, b avro.Schema, out *[]string, seen map[string]bool) {
	a, b = derefSchema(a), derefSchema(b)
	name := func(f string) string {
		if prefix == "" {
			return f
		}
		return prefix + "." + f
	}
	switch {
	case a.Type() == avro.Record && b.Type() == avro.Record:
		ra, rb := a.(*avro.RecordSchema), b.(*avro.RecordSchema)
		if seen[ra.FullName()+"|"+rb.FullName()] {
			return
		}
		seen[ra.FullName()+"|"+rb.FullName()] = true
		if ra.FullName() != rb.FullName() {
			*out = append(*out, fmt.Sprintf("~ record %s renamed %s → %s", orRoot(prefix), ra.FullName(), rb.FullName()))
		}
		bf := map[string]*avro.Field{}
		for _, f := range rb.Fields() {
			bf[f.Name()] = f
		}
		af := map[string]bool{}
		for _, f := range ra.Fields() {
			af[f.Name()] = true
			g, ok := bf[f.Name()]
			if !ok {
				*out = append(*out, fmt.Sprintf("- field %s: %s", name(f.Name()), label(f.Type())))
				continue
			}
			ta, tb := derefSchema(f.Type()), derefSchema(g.Type())
			if ta.Type() == avro.Record && tb.Type() == avro.Record || ta.Type() == avro.Enum && tb.Type() == avro.Enum {
				diffAt(name(f.Name()), ta, tb, out, seen)
			} else if label(ta) != label(tb) {
				*out = append(*out, fmt.Sprintf("~ field %s: %s → %s", name(f.Name()), label(ta), label(tb)))
			}
			if da, db := defaultOf(f), defaultOf(g); da != db {
				*out = append(*out, fmt.Sprintf("~ field %s: default %s → %s", name(f.Name()), da, db))
			}
		}
		for _, f := range rb.Fields() {
			if !af[f.Name()] {
				*out = append(*out, fmt.Sprintf("+ field %s: %s (default %s)", name(f.Name()), label(f.Type()), defaultOf(f)))
			}
		}
	case a.Type() == avro.Enum && b.Type() == avro.Enum:
		ea, eb := a.(*avro.EnumSchema), b.(*avro.EnumSchema)
		for _, s := range eb.Symbols() {
			if !slices.Contains(ea.Symbols(), s) {
				*out = append(*out, fmt.Sprintf("+ symbol %s.%s", orRoot(prefix), s))
			}
		}
		for _, s := range ea.Symbols() {
			if !slices.Contains(eb.Symbols(), s) {
				*out = append(*out, fmt.Sprintf("- symbol %s.%s", orRoot(prefix), s))
			}
		}
		if ea.Default() != eb.Default() {
			*out = append(*out, fmt.Sprintf("~ enum %s: default %q → %q", orRoot(prefix), ea.Default(), eb.Default()))
		}
	default:
		if label(a) != label(b) {
			*out = append(*out, fmt.Sprintf("~ %s: %s → %s", orRoot(prefix), label(a), label(b)))
		}
	}
}

func orRoot(p string) string {
	if p == "" {
		return "(root)"
	}
	return p
}
