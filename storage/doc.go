// Package storage holds the state tlsedge nodes share: ACME accounts, keys
// and certificates, and the locks that make one node of a cluster order a
// certificate while the others wait and then load it.
//
// The state is a certmagic.Storage (a key-value store with directory
// semantics plus a distributed Locker). Location is the engine.storage
// option: empty for files under the data directory, a directory for files
// there (certmagic's FileStorage), or a postgres:// URL for Postgres, which
// keeps keys in one table and locks as leases in another, in a schema
// tlsedge creates and migrates itself.
package storage
