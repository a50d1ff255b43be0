package main

import (
	"os"

	"github.com/inkan-relay/inkan/cmd/inkan/oauthcmd"
)

// runOAuth2 is `inkan oauth2`: the first refresh token of a relay that logs
// in with OAuth2, and a test of its settings.
func runOAuth2(args []string) int {
	path, rest := splitConfigFlag(args)
	return oauthcmd.Main(loadConfigFor(path), rest, os.Stdout, os.Stderr)
}
