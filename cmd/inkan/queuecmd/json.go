package queuecmd

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"

	"github.com/inkan-relay/inkan/queue"
)

// jsonMessage is one line of `inkan queue list -json`: the object
// `postqueue -j` prints for a message (Postfix 3.1+), so that tools written
// for Postfix's queue read inkan's. queue_name is "hold" for a held message,
// "deferred" once an attempt failed, else "active". The recipients are
// those still to be delivered, each with the reply of its last attempt.
// Addresses and replies are as received (JSON escapes control characters).
type jsonMessage struct {
	QueueName    string          `json:"queue_name"`
	QueueID      string          `json:"queue_id"`
	ArrivalTime  int64           `json:"arrival_time"`
	MessageSize  int64           `json:"message_size"`
	ForcedExpire bool            `json:"forced_expire"`
	Sender       string          `json:"sender"`
	Recipients   []jsonRecipient `json:"recipients"`
}

type jsonRecipient struct {
	Address     string `json:"address"`
	DelayReason string `json:"delay_reason,omitempty"`
}

// jsonFlag takes -json (or --json, -j) out of the arguments of list.
func jsonFlag(cmd string, ids []string) ([]string, bool) {
	if cmd != "list" {
		return ids, false
	}
	var rest []string
	asJSON := false
	for _, a := range ids {
		switch a {
		case "-json", "--json", "-j":
			asJSON = true
		default:
			rest = append(rest, a)
		}
	}
	return rest, asJSON
}

// lister is list, or listJSON with -json.
func lister(asJSON bool) func(admin, io.Writer) error {
	if asJSON {
		return listJSON
	}
	return list
}

// emptyQueue is what list prints when there is no queue at all: mailq's
// sentence, or nothing in JSON.
func emptyQueue(w io.Writer, asJSON bool) {
	if !asJSON {
		fmt.Fprintln(w, "Mail queue is empty")
	}
}

// listJSON prints one JSON object per line, one line per message.
func listJSON(a admin, w io.Writer) error {
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	err := a.List(func(info queue.Info) error {
		m := jsonMessage{QueueName: "active", QueueID: info.ID, ArrivalTime: info.Arrival.Unix(),
			MessageSize: info.Size, Sender: info.From, Recipients: []jsonRecipient{}}
		switch {
		case info.Held:
			m.QueueName = "hold"
		case info.Attempts > 0:
			m.QueueName = "deferred"
		}
		for _, r := range info.Rcpts {
			if r.Status == queue.Pending {
				m.Recipients = append(m.Recipients, jsonRecipient{Address: r.Addr, DelayReason: r.LastReply})
			}
		}
		return enc.Encode(m)
	})
	if err != nil {
		return err
	}
	return bw.Flush()
}
