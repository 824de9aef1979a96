package oidc_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/spinerun/spine/adapters/oidc"
	"github.com/spinerun/spine/schemas"
)

// A verifier for tokens that an issuer grants to Spine; the first Verify
// fetches the issuer's discovery document and keys.
func ExampleNew() {
	v, err := oidc.New(oidc.Config{
		Issuer:   "https://id.example.com/realms/spine", // SPINE_OIDC_ISSUER
		Audience: "spine",                               // SPINE_OIDC_AUDIENCE
		Claims:   []string{"email", "groups"},           // SPINE_OIDC_CLAIMS
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	_, err = v.Verify(context.Background(), "not-a-token")
	var te *oidc.TokenError
	if errors.As(err, &te) {
		fmt.Println(te.Reason)
	}
	// Output: malformed
}

// The shape its consumers (HTTP ingress, the orchestrator's admission)
// define for a verifier.
var _ interface {
	Verify(ctx context.Context, rawToken string) (*schemas.Provenance, error)
} = (*oidc.Verifier)(nil)
