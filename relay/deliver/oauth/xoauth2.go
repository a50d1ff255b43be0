package oauth

import (
	"encoding/json"
	"errors"

	"github.com/emersion/go-sasl"
)

// XOAuth2 is the SASL mechanism name of Google's and Microsoft's XOAUTH2.
const XOAuth2 = "XOAUTH2"

// XOAuth2Error is the server's JSON error challenge, sent before its final
// 535 reply: {"status":"401","schemes":"bearer","scope":"..."}.
type XOAuth2Error struct {
	Status  string `json:"status"`
	Schemes string `json:"schemes"`
	Scope   string `json:"scope"`
}

// XOAuth2Client is the client side of XOAUTH2, which go-sasl lacks. The
// initial response is "user=" user ^A "auth=Bearer " token ^A ^A; a server
// that refuses it sends a 334 challenge holding a JSON error, to which the
// client answers with an empty line, and then 535.
type XOAuth2Client struct {
	user, token string
	failure     *XOAuth2Error
}

// NewXOAuth2Client returns a sasl.Client for XOAUTH2. After a refusal,
// Failure returns the server's JSON error, if it sent one.
func NewXOAuth2Client(user, token string) *XOAuth2Client {
	return &XOAuth2Client{user: user, token: token}
}

var _ sasl.Client = (*XOAuth2Client)(nil)

func (c *XOAuth2Client) Start() (string, []byte, error) {
	return XOAuth2, []byte("user=" + c.user + "\x01auth=Bearer " + c.token + "\x01\x01"), nil
}

func (c *XOAuth2Client) Next(challenge []byte) ([]byte, error) {
	if c.failure != nil {
		return nil, errors.New("xoauth2: a second challenge after the error")
	}
	c.failure = &XOAuth2Error{}
	if json.Unmarshal(challenge, c.failure) != nil {
		c.failure.Status = "unreadable error challenge"
	}
	return []byte{}, nil // the empty response that ends the exchange
}

// Failure is the error the server sent as a challenge, or nil.
func (c *XOAuth2Client) Failure() *XOAuth2Error { return c.failure }
