package httpcore

import "tlsedge/conninfo"

// Revoke ends the connections whose facts deny picks, for a reload that
// takes an identity's access away: an idle keep-alive connection is closed
// at once (as Shutdown closes idle ones), a busy one finishes its current
// response, sent with Connection: close, and is then closed. An h2
// connection gets GOAWAY, as at Shutdown: its streams in progress finish,
// no new one is taken, and it closes when they are done. It returns how
// many connections were picked.
//
// deny runs outside the core's lock: it may consult the user database.
func (c *Core) Revoke(deny func(*conninfo.Info) bool) int {
	c.mu.Lock()
	all := make([]*conn, 0, len(c.conns))
	for cn := range c.conns {
		all = append(all, cn)
	}
	c.mu.Unlock()
	var picked []*conn
	for _, cn := range all {
		if cn.info != nil && deny(cn.info) {
			cn.revoked.Store(true)
			picked = append(picked, cn)
		}
	}
	var idle []*conn
	for _, cn := range picked {
		if sc := cn.h2.Load(); sc != nil {
			sc.shutdown()
		}
	}
	c.mu.Lock()
	for _, cn := range picked {
		if _, open := c.conns[cn]; open && cn.h2.Load() == nil && cn.state.CompareAndSwap(stateIdle, stateClosing) {
			cn.nc.Close()
			idle = append(idle, cn)
		}
	}
	c.mu.Unlock()
	c.releaseParked(idle)
	return len(picked)
}
