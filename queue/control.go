package queue

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"time"
)

// ControlSocket is the control socket's name inside the spool folder.
const ControlSocket = "control.sock"

// ServeControl serves the admin API as JSON over HTTP on a unix socket (mode
// 0600) until ctx is done; path "" means Dir/control.sock. `inkan queue` uses
// it while a server holds the spool lock. Routes:
//
//	GET  /v1/messages            one Info per line (JSON lines)
//	GET  /v1/messages/{id}       Info
//	GET  /v1/messages/{id}/body  the message as it will be sent
//	POST /v1/messages/{id}/{op}  op: retry, delete, bounce, hold, release; id may be ALL
//	GET  /v1/stats               {"count": N, "oldest": TIME}
func (q *Queue) ServeControl(ctx context.Context, path string) error {
	if path == "" {
		path = filepath.Join(q.opts.Dir, ControlSocket)
	}
	// Names go through an os.Root of the socket's folder, which follows no
	// link out of it (see openDirs).
	dir, name := q.root, filepath.Base(path)
	if filepath.Dir(path) != filepath.Clean(q.opts.Dir) {
		d, err := os.OpenRoot(filepath.Dir(path))
		if err != nil {
			return fmt.Errorf("queue: control socket: %w", err)
		}
		defer d.Close()
		dir = d
	}
	// We hold the spool lock, so a socket left there is stale.
	if fi, err := dir.Lstat(name); err == nil && fi.Mode()&os.ModeSocket != 0 {
		dir.Remove(name)
	}
	// Bind under a temporary name, restrict it, then rename: the socket
	// appears already listening and already private.
	tmp := name + ".new"
	dir.Remove(tmp)
	l, err := net.Listen("unix", path+".new")
	if err != nil {
		return fmt.Errorf("queue: control socket: %w", err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	defer dir.Remove(name)
	if q.owner != nil {
		err = dir.Lchown(tmp, q.owner.UID, q.owner.GID)
	}
	if err == nil {
		err = dir.Chmod(tmp, 0o600)
	}
	if err == nil {
		err = dir.Rename(tmp, name)
	}
	if err != nil {
		l.Close()
		dir.Remove(tmp)
		return fmt.Errorf("queue: control socket: %w", err)
	}
	srv := &http.Server{Handler: q.controlHandler(), ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	select {
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			srv.Close()
		}
		<-errc
		return nil
	case err := <-errc:
		return fmt.Errorf("queue: control socket: %w", err)
	}
}

func (q *Queue) controlHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/messages", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/jsonl")
		enc := json.NewEncoder(w)
		q.List(func(info Info) error { return enc.Encode(info) })
	})
	mux.HandleFunc("GET /v1/messages/{id}", func(w http.ResponseWriter, r *http.Request) {
		info, err := q.Get(r.PathValue("id"))
		reply(w, info, err)
	})
	mux.HandleFunc("GET /v1/messages/{id}/body", func(w http.ResponseWriter, r *http.Request) {
		rc, err := q.Body(r.PathValue("id"))
		if err != nil {
			reply(w, nil, err)
			return
		}
		defer rc.Close()
		w.Header().Set("Content-Type", "message/rfc822")
		io.Copy(w, rc)
	})
	ops := map[string]func(string) error{
		"retry": q.Retry, "delete": q.Delete, "bounce": q.Bounce, "hold": q.Hold, "release": q.Release,
	}
	mux.HandleFunc("POST /v1/messages/{id}/{op}", func(w http.ResponseWriter, r *http.Request) {
		op := ops[r.PathValue("op")]
		if op == nil {
			http.Error(w, `{"error":"unknown operation"}`, http.StatusNotFound)
			return
		}
		reply(w, struct{}{}, op(r.PathValue("id")))
	})
	mux.HandleFunc("GET /v1/stats", func(w http.ResponseWriter, r *http.Request) {
		n, oldest := q.Stats()
		reply(w, stats{Count: n, Oldest: oldest}, nil)
	})
	return mux
}

type stats struct {
	Count  int       `json:"count"`
	Oldest time.Time `json:"oldest,omitzero"`
}

// apiError is the body of a failed control request.
type apiError struct {
	Error string `json:"error"`
	Kind  string `json:"kind,omitempty"` // "not_found", "busy"
}

func reply(w http.ResponseWriter, v any, err error) {
	w.Header().Set("Content-Type", "application/json")
	if err != nil {
		code, kind := http.StatusInternalServerError, ""
		switch {
		case errors.Is(err, ErrNotFound):
			code, kind = http.StatusNotFound, "not_found"
		case errors.Is(err, ErrBusy):
			code, kind = http.StatusConflict, "busy"
		}
		w.WriteHeader(code)
		json.NewEncoder(w).Encode(apiError{Error: err.Error(), Kind: kind})
		return
	}
	json.NewEncoder(w).Encode(v)
}

// Client talks to a running server's control socket. Its methods mirror the
// Queue's admin API.
type Client struct {
	hc *http.Client
}

// NewClient returns a client for the control socket at path. It does not
// connect until used.
func NewClient(path string) *Client {
	return &Client{hc: &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}}}
}

// Close releases idle connections.
func (c *Client) Close() error {
	c.hc.CloseIdleConnections()
	return nil
}

func (c *Client) do(method, path string) (*http.Response, error) {
	req, err := http.NewRequest(method, "http://queue"+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("queue: control socket: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		var ae apiError
		if json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&ae) != nil || ae.Error == "" {
			ae.Error = resp.Status
		}
		switch ae.Kind {
		case "not_found":
			return nil, ErrNotFound
		case "busy":
			return nil, ErrBusy
		}
		return nil, errors.New(ae.Error)
	}
	return resp, nil
}

func (c *Client) getJSON(path string, v any) error {
	resp, err := c.do("GET", path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("queue: control socket: %w", err)
	}
	return nil
}

// List calls fn for each message, as Queue.List.
func (c *Client) List(fn func(Info) error) error {
	resp, err := c.do("GET", "/v1/messages")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 64<<20)
	for sc.Scan() {
		var info Info
		if err := json.Unmarshal(sc.Bytes(), &info); err != nil {
			return fmt.Errorf("queue: control socket: %w", err)
		}
		if err := fn(info); err != nil {
			return err
		}
	}
	return sc.Err()
}

// Get describes one message, as Queue.Get.
func (c *Client) Get(id string) (Info, error) {
	var info Info
	err := c.getJSON("/v1/messages/"+url.PathEscape(id), &info)
	return info, err
}

// Body returns the message, as Queue.Body.
func (c *Client) Body(id string) (io.ReadCloser, error) {
	resp, err := c.do("GET", "/v1/messages/"+url.PathEscape(id)+"/body")
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

// Stats returns the number of messages and the oldest arrival.
func (c *Client) Stats() (int, time.Time, error) {
	var s stats
	err := c.getJSON("/v1/stats", &s)
	return s.Count, s.Oldest, err
}

func (c *Client) op(id, op string) error {
	resp, err := c.do("POST", "/v1/messages/"+url.PathEscape(id)+"/"+op)
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

// Retry, Delete, Bounce, Hold and Release work as the Queue methods.
func (c *Client) Retry(id string) error   { return c.op(id, "retry") }
func (c *Client) Delete(id string) error  { return c.op(id, "delete") }
func (c *Client) Bounce(id string) error  { return c.op(id, "bounce") }
func (c *Client) Hold(id string) error    { return c.op(id, "hold") }
func (c *Client) Release(id string) error { return c.op(id, "release") }
