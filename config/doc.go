// Package config reads tlsedge's configuration: the seeds' INI file form
// ([global] with server.socket_port = 8443), and the option table built from
// struct tags, which gives every option one name as a Go field, a flag
// (--socket-port) and a config key (server.socket_port), one parser for its
// values, and one place for its default and help.
//
// Tags on a struct field:
//
//	opt:"snake_name"    the option's name; "-" skips the field
//	default:"value"     the default, written as on the command line
//	help:"one line"     the flag and README help
//	group:"Listener"    the heading it is listed under
//	unit:"bytes"        for int64 sizes: accept 500KiB, 100MiB...
//
// Supported field types: string, bool, int, int64, uint32, time.Duration
// (plain seconds or a Go duration), os.FileMode (octal), []string (lists), and
// any type implementing encoding.TextMarshaler and encoding.TextUnmarshaler.
// A struct field without an opt tag is walked, so components keep their own
// option structs and a server config embeds them.
package config
