package pipeline

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
)

// Grant is what one Kafka principal may do on a cluster whose authorizer
// is on: the topics it reads and writes, the consumer groups it joins and
// the transactional ids (prefixes) it uses. Anything not granted is
// refused by the broker. Describe comes with every Read and Write.
type Grant struct {
	// Principal is the SASL user name (the ACLs name User:<Principal>).
	Principal string
	// Read and Write are topics, by literal name.
	Read, Write []Topic
	// Groups are consumer groups, by literal name.
	Groups []string
	// TransactionalIDs are transactional id prefixes.
	TransactionalIDs []string
}

// ApplyGrants creates the ACLs of every grant through adm, which must
// speak for a superuser (or a principal allowed to Alter the cluster).
// Creating an ACL that exists is a no-op, so it is idempotent.
func ApplyGrants(ctx context.Context, adm *kadm.Client, grants []Grant) error {
	var errs []error
	for _, g := range grants {
		if g.Principal == "" {
			return errors.New("a grant without a principal")
		}
		user := "User:" + g.Principal
		var bs []*kadm.ACLBuilder
		if ts := topicNames(g.Read); len(ts) > 0 {
			bs = append(bs, kadm.NewACLs().Allow(user).AllowHosts().Topics(ts...).
				ResourcePatternType(kadm.ACLPatternLiteral).Operations(kadm.OpRead, kadm.OpDescribe))
		}
		if ts := topicNames(g.Write); len(ts) > 0 {
			bs = append(bs, kadm.NewACLs().Allow(user).AllowHosts().Topics(ts...).
				ResourcePatternType(kadm.ACLPatternLiteral).Operations(kadm.OpWrite, kadm.OpDescribe))
		}
		if len(g.Groups) > 0 {
			bs = append(bs, kadm.NewACLs().Allow(user).AllowHosts().Groups(g.Groups...).
				ResourcePatternType(kadm.ACLPatternLiteral).Operations(kadm.OpRead, kadm.OpDescribe))
		}
		if len(g.TransactionalIDs) > 0 {
			bs = append(bs, kadm.NewACLs().Allow(user).AllowHosts().TransactionalIDs(g.TransactionalIDs...).
				ResourcePatternType(kadm.ACLPatternPrefixed).Operations(kadm.OpWrite, kadm.OpDescribe))
		}
		for _, b := range bs {
			res, err := adm.CreateACLs(ctx, b)
			if err != nil {
				errs = append(errs, fmt.Errorf("create ACLs of %s: %w", user, err))
				continue
			}
			for _, r := range res {
				if r.Err != nil {
					errs = append(errs, fmt.Errorf("create ACL %s %s %s %s: %w", user, r.Operation, r.Type, r.Name, r.Err))
				}
			}
		}
	}
	return errors.Join(errs...)
}

// GrantTable renders grants as a Markdown table (principal, writes, reads,
// groups, transactional ids), as the README documents them.
func GrantTable(grants []Grant) string {
	var b strings.Builder
	b.WriteString("| principal | writes | reads | groups | transactional ids (prefix) |\n| --- | --- | --- | --- | --- |\n")
	for _, g := range grants {
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s | %s |\n", g.Principal, codeList(topicNames(g.Write)), codeList(topicNames(g.Read)), codeList(g.Groups), codeList(g.TransactionalIDs))
	}
	return b.String()
}

func codeList(ss []string) string {
	if len(ss) == 0 {
		return "—"
	}
	ss = append([]string(nil), ss...)
	sort.Strings(ss)
	return "`" + strings.Join(ss, "`, `") + "`"
}

func topicNames(ts []Topic) []string {
	out := make([]string, 0, len(ts))
	for _, t := range ts {
		out = append(out, string(t))
	}
	return out
}

// EmbeddedSASL makes the embedded broker require SASL authentication.
type EmbeddedSASL struct {
	// Mechanism is PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.
	Mechanism string
	// Superuser and SuperPassword are the admin principal, which bypasses
	// ACLs (it creates topics, ACLs and the registry's _schemas).
	Superuser, SuperPassword string
	// Users are further principals by name and password. With ACLs on
	// they may do only what ACLs (ApplyGrants) allow them.
	Users map[string]string
	// ACLs turns the authorizer on.
	ACLs bool
}

func (s *EmbeddedSASL) opts() []kfake.Opt {
	mech := strings.ToUpper(s.Mechanism)
	opts := []kfake.Opt{kfake.EnableSASL(), kfake.Superuser(mech, s.Superuser, s.SuperPassword)}
	names := make([]string, 0, len(s.Users))
	for n := range s.Users {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		opts = append(opts, kfake.User(mech, n, s.Users[n]))
	}
	if s.ACLs {
		opts = append(opts, kfake.EnableACLs())
	}
	return opts
}
