package deliver

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/emersion/go-sasl"

	"github.com/inkan-relay/inkan/relay/deliver/oauth"
)

// secretName is what the relay logs in with, for messages.
func (r *relay) secretName() string {
	if r.oauth != nil {
		return "OAuth2 access token"
	}
	return "password"
}

// loginOAuth logs in with an access token (XOAUTH2 or OAUTHBEARER). When
// the relay refuses the token, a new one is fetched and tried once on the
// same connection; a refused login defers the mail.
func (t *Transport) loginOAuth(ctx context.Context, s *conn, route Route, rel *relay) *verdict {
	mech, v := oauthMechanism(s, rel)
	if v != nil {
		return v
	}
	token, err := rel.oauth.Token(ctx)
	if err != nil {
		return tokenVerdict(rel, route, err)
	}
	v, refused := t.authWith(s, route, mech, token)
	if !refused {
		return v
	}
	t.log.Warn("the relay refused the OAuth2 access token; getting a new one", "relay", s.remote, "setting", rel.key,
		"user", route.User, "reply", v.msg)
	token, err = rel.oauth.Refused(ctx, token)
	if err != nil {
		return tokenVerdict(rel, route, err)
	}
	v, refused = t.authWith(s, route, mech, token)
	if refused {
		v.msg += fmt.Sprintf(" (a freshly issued token was refused too: check that %s may send with SMTP AUTH and that the app has the SMTP permission in its scopes)", route.User)
		v.stop = true // the account, not this host: another address would refuse it too
	}
	return v
}

// oauthMechanism picks XOAUTH2 or OAUTHBEARER: oauth2.mechanism, else
// XOAUTH2 when offered (Microsoft 365 offers only that), else OAUTHBEARER.
func oauthMechanism(s *conn, rel *relay) (string, *verdict) {
	want := strings.ToUpper(rel.settings.OAuth2.Mechanism)
	for _, m := range []string{oauth.XOAuth2, sasl.OAuthBearer} {
		if (want == "" || want == m) && s.smtp.SupportsAuth(m) {
			return m, nil
		}
	}
	ok, list := s.smtp.Extension("AUTH")
	switch {
	case !ok:
		return "", temporary("4.7.0", "%s does not offer AUTH", s.remote)
	case want != "":
		return "", temporary("4.7.0", "%s does not offer %s (%s.oauth2.mechanism); it offers %s", s.remote, want, rel.key, list)
	}
	return "", temporary("4.7.0", "%s offers neither XOAUTH2 nor OAUTHBEARER, which %s.oauth2 needs: %s", s.remote, rel.key, list)
}

// authWith runs AUTH with token; refused reports a refusal of the token
// itself (535, or an OAUTHBEARER error), as opposed to a lost connection.
func (t *Transport) authWith(s *conn, route Route, mech, token string) (v *verdict, refused bool) {
	var c sasl.Client
	var x *oauth.XOAuth2Client
	if mech == oauth.XOAuth2 {
		x = oauth.NewXOAuth2Client(route.User, token)
		c = x
	} else {
		c = sasl.NewOAuthBearerClient(&sasl.OAuthBearerOptions{Username: route.User, Token: token,
			Host: route.Host, Port: route.Port})
	}
	err := s.smtp.Auth(c)
	if err == nil {
		return nil, false
	}
	var be *sasl.OAuthBearerError
	if errors.As(err, &be) {
		return temporary("4.7.8", "%s refused the OAuth2 access token for %s (OAUTHBEARER status %q)", s.remote, route.User, be.Status), true
	}
	fv, ends := fromError(err, s.remote, "during AUTH")
	if ends {
		return fv, false
	}
	msg := fmt.Sprintf("%s refused the OAuth2 access token for %s: %s", s.remote, route.User, fv.String())
	if x != nil && x.Failure() != nil {
		msg += fmt.Sprintf(" (XOAUTH2 status %q)", x.Failure().Status)
	}
	// Kept as a temporary failure whatever the code: a login problem is a
	// configuration problem here, and the mail waits for its fix.
	return temporary("4.7.8", "%s", msg), true
}

// tokenVerdict defers the mail when no access token can be had; no other
// address of the relay would do better.
func tokenVerdict(rel *relay, route Route, err error) *verdict {
	v := temporary("4.7.0", "not logging in to %s as %s: %v", rel.key, route.User, err)
	v.stop = true
	return v
}
