// Package server is the Server adapter of the seeds (cherrypy.server): a
// Server owns its listeners (TCP over IPv4, IPv6 or a host name's every
// address, a UNIX socket path, or a Linux abstract socket), its SSL adapter
// and its request core, and has the seeds' life cycle: Start blocks until
// listening, Stop blocks until every worker is done and the socket released.
// An Engine runs several Servers together (the seeds' subscribe/unsubscribe).
//
// Config holds every option under the seeds' names; the tags on its fields
// (and on the component option structs it embeds) make each a flag and a
// config-file key as well, see package config.
package server
