package inbound_test

import (
	"context"
	"time"
)

type ctxT = context.Context

func contextWithTimeout(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}
