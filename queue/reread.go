package queue

import (
	"bytes"
	"fmt"
	"io"
)

// Reread returns the bytes written to the draft so far, for a writer that
// must see a whole message before it can hash it: the SMTP server decides
// how to label an unlabelled 8-bit body (a header field it adds and signs)
// only once the body is read, so a body too large to hold is spooled first
// and signed from here. The draft stays open for Commit or Abort; the reader
// is valid until then.
func (d *Draft) Reread() (io.Reader, error) {
	if d.err != nil {
		return nil, d.err
	}
	if d.done {
		return nil, fmt.Errorf("queue: reread a finished draft")
	}
	if d.mem != nil {
		return bytes.NewReader(*d.mem), nil
	}
	if err := d.w.Flush(); err != nil {
		d.err = fmt.Errorf("queue: write draft: %w", err)
		return nil, d.err
	}
	return io.NewSectionReader(d.f, 0, d.n), nil
}
