// Package policy decides who may connect: the TLS half (protocol versions,
// cipher strings, curves, client-certificate modes and identity allow-lists,
// HSTS) and the peer-credential half (uid, gid, user and group allow-lists for
// UNIX-socket clients). Allow-lists fail closed: a non-empty list admits only
// what it names.
package policy
