package deliver

// IdleConns counts the pooled connections (tests only).
func (t *Transport) IdleConns() int { return t.pool.size() }
