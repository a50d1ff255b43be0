package config

import "fmt"

// tls.acme.challenge values: which challenge tls.acme.challenge_listen
// answers ("" = TLS-ALPN-01 on port 443, HTTP-01 elsewhere).
const (
	ACMEHTTP01    = "http-01"
	ACMETLSALPN01 = "tls-alpn-01"
)

// acmeChallenge checks tls.acme.challenge.
func (k *checker) acmeChallenge(a *ACME) {
	switch a.Challenge {
	case "", ACMEHTTP01, ACMETLSALPN01:
	default:
		k.bad("tls.acme.challenge", fmt.Sprintf("invalid value %q", a.Challenge),
			`use http-01 or tls-alpn-01, or leave it empty (tls-alpn-01 when challenge_listen is port 443, else http-01)`)
	}
}
