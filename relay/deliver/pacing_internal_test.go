package deliver

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/inkan-relay/inkan/config"
)

// Whatever order deliveries arrive in, and however late they come back to
// their slots, the sends never break the limit (in the real period, not
// the period plus grace), every delivery is sent in the end, and none
// waits for ever.
func TestPacerKeepsTheLimitWhenDeliveriesComeBackLate(t *testing.T) {
	for seed := range uint64(50) {
		r := rand.New(rand.NewPCG(seed, 1))
		limit := 1 + r.IntN(5)
		period := time.Duration(1+r.IntN(20)) * time.Second
		p := newPacer("test", config.Pacing{Messages: limit, Period: config.Duration(period)})
		start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		type pending struct {
			key string
			at  time.Time
		}
		var todo []pending
		for i := range 40 {
			todo = append(todo, pending{fmt.Sprint(i), start.Add(time.Duration(r.IntN(30)) * time.Second)})
		}
		var sends []time.Time
		for rounds := 0; len(todo) > 0; rounds++ {
			if rounds > 10000 {
				t.Fatalf("seed %d: deliveries never all went", seed)
			}
			slices.SortFunc(todo, func(a, b pending) int { return a.at.Compare(b.at) })
			d := todo[0]
			todo = todo[1:]
			tk, at := p.take(d.key, 1, d.at)
			if tk != nil {
				sends = append(sends, d.at)
				continue
			}
			// The queue comes back at the slot, or late (up to 3s).
			late := time.Duration(r.IntN(4)) * time.Second * time.Duration(r.IntN(2))
			todo = append(todo, pending{d.key, at.Add(late)})
		}
		slices.SortFunc(sends, time.Time.Compare)
		for i := range sends {
			n := 0
			for j := i; j < len(sends) && sends[j].Sub(sends[i]) < period; j++ {
				n++
			}
			if n > limit {
				t.Fatalf("seed %d: %d sends within %s from %s, limit %d", seed, n, period, sends[i].Sub(start), limit)
			}
		}
		if len(sends) != 40 {
			t.Fatalf("seed %d: %d sends", seed, len(sends))
		}
	}
}
