package auth

import (
	"errors"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// The SASL servers below call verify once per exchange. verify should return
// nil, or an *smtp.SMTPError (ErrAuthFailed, ErrTooManyFailures...) that
// go-smtp writes as the reply; any other error becomes ErrAuthTemporary
// (454 4.7.0). A malformed exchange is answered with ErrAuthMalformed.

// plainServer wraps go-sasl's PLAIN server to refuse proxy authorization and
// to give every failure an SMTP reply code.
type plainServer struct {
	inner sasl.Server
}

// NewPlainServer returns an RFC 4616 PLAIN server. An authorization identity
// is accepted only when empty or equal to the user name.
func NewPlainServer(verify func(user, pass string) error) sasl.Server {
	return &plainServer{inner: sasl.NewPlainServer(func(identity, user, pass string) error {
		if identity != "" && identity != user {
			return ErrAuthzidMismatch
		}
		return replyError(verify(user, pass))
	})}
}

func (s *plainServer) Next(response []byte) ([]byte, bool, error) {
	challenge, done, err := s.inner.Next(response)
	if err != nil {
		var se *smtp.SMTPError
		if !errors.As(err, &se) {
			return nil, false, ErrAuthMalformed
		}
		return nil, false, se
	}
	return challenge, done, nil
}

// replyError turns verify's result into what go-smtp should write.
func replyError(err error) error {
	if err == nil {
		return nil
	}
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return se
	}
	return ErrAuthTemporary
}

// LOGIN challenges (draft-murchison-sasl-login-00 §2).
var (
	loginUsername = []byte("Username:")
	loginPassword = []byte("Password:")
)

type loginServer struct {
	verify func(user, pass string) error
	state  int // 0 start, 1 want user name, 2 want password, 3 done
	user   string
}

// NewLoginServer returns a LOGIN server (draft-murchison-sasl-login): it
// asks "Username:" then "Password:". An initial response is taken as the
// user name, as clients send with "AUTH LOGIN <base64 user>".
func NewLoginServer(verify func(user, pass string) error) sasl.Server {
	return &loginServer{verify: verify}
}

func (s *loginServer) Next(response []byte) ([]byte, bool, error) {
	switch s.state {
	case 0:
		if response == nil {
			s.state = 1
			return loginUsername, false, nil
		}
		s.user, s.state = string(response), 2
		return loginPassword, false, nil
	case 1:
		s.user, s.state = string(response), 2
		return loginPassword, false, nil
	case 2:
		s.state = 3
		return nil, true, replyError(s.verify(s.user, string(response)))
	}
	return nil, false, ErrAuthMalformed
}
