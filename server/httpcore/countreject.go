package httpcore

// CountRejection records a request refused in front of the handlers by a
// check of the server's own (a misdirected request, 421) among the core's
// rejections, so Stats, the status page and the metrics list it with the
// core's. It does nothing with statistics off.
func (c *Core) CountRejection(status int, reason string) {
	if c.st != nil {
		c.st.reject(status, reason)
	}
}
