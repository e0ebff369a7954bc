// Package control is tlsedge's local admin API: a small JSON-over-HTTP
// service on a UNIX socket (control_socket) and the client behind
// `tlsedge ctl stats|reload|stop|config`.
//
// There are no tokens or passwords. Who may use the socket is decided by the
// kernel-reported peer credentials of each connection, read at accept: root,
// and the uids and gids in control_allow_uid and control_allow_gid. Anyone
// else is disconnected before a byte is read. The socket file is created mode
// 0600 when only root is allowed and 0666 when allow-lists are set (the
// credential check is then the gate), so the file mode never admits someone
// the lists do not.
//
// Endpoints (all answers are JSON):
//
//	GET  /stats   the Stats callback's value
//	GET  /config  the Config callback's value with secrets redacted (Redact)
//	POST /reload  runs Reload; 200 {"status":"reloaded"} or 500 {"error":...}
//	POST /stop    202 {"status":"stopping"}, then runs Stop
package control
