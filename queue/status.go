package queue

import "fmt"

var statusNames = [...]string{Pending: "pending", Sent: "sent", Failed: "failed", Deferred: "deferred"}

func (s Status) String() string {
	if s >= 0 && int(s) < len(statusNames) {
		return statusNames[s]
	}
	return fmt.Sprintf("Status(%d)", int(s))
}

// MarshalText makes Status readable in state files and the control API.
func (s Status) MarshalText() ([]byte, error) {
	if s < 0 || int(s) >= len(statusNames) {
		return nil, fmt.Errorf("queue: bad status %d", int(s))
	}
	return []byte(statusNames[s]), nil
}

// UnmarshalText is the inverse of MarshalText.
func (s *Status) UnmarshalText(b []byte) error {
	for i, n := range statusNames {
		if n == string(b) {
			*s = Status(i)
			return nil
		}
	}
	return fmt.Errorf("queue: unknown status %q", b)
}
