package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/caddyserver/certmagic"

	"tlsedge/apps"
	"tlsedge/config"
	"tlsedge/storage"
	"tlsedge/tlsadapter"
)

// clusterState is what a node shares with the others through
// engine.storage, and what the status page says about it.
type clusterState struct {
	storage certmagic.Storage // nil: files under the data directory
	kind    string            // "files", "directory" or "postgres"
	node    string            // this node's id, as the lock table names it
	monitor *storage.Monitor  // PostgreSQL only
	tickets *storage.TicketKeys
}

// usesTickets reports whether some server offers TLS session tickets, whose
// keys a PostgreSQL storage shares.
func usesTickets(o *Options) bool {
	for _, c := range o.Servers() {
		if c.TLS.SSLModule != "none" && c.TLS.SSLSessionTickets {
			return true
		}
	}
	return false
}

// needKeyFile refuses a PostgreSQL storage with session tickets on and no
// storage_key_file: the nodes could not share ticket keys safely.
func needKeyFile(o *Options) error {
	if o.Process.Storage.DSN() == "" || !usesTickets(o) || o.Process.StorageKeyFile != "" {
		return nil
	}
	return config.KeyError("storage_key_file", "is needed with a postgres:// storage: it seals the session-ticket keys the nodes share; give every node the same file (openssl rand -hex 32 > FILE; chmod 600 FILE), or set ssl_session_tickets false")
}

// openCluster opens engine.storage for a serving node (openStorage, the
// schema migrated) and, with PostgreSQL, starts its health checks and the
// shared session-ticket key rings, sealed with engine.storage_key_file:
// every node must be given the same file, and a PostgreSQL storage with
// session tickets on is refused without one.
func openCluster(ctx context.Context, o *Options, log *slog.Logger) (*clusterState, func(), error) {
	host, _ := os.Hostname()
	cl := &clusterState{kind: "files", node: fmt.Sprintf("%s/%d", host, os.Getpid())}
	dsn := o.Process.Storage.DSN()
	var secret []byte
	if dsn != "" && usesTickets(o) {
		if err := needKeyFile(o); err != nil {
			return nil, nil, err
		}
		var err error
		if secret, err = storage.ReadSecretFile(o.Process.StorageKeyFile); err != nil {
			return nil, nil, config.KeyError("storage_key_file", "%v", err)
		}
	}
	st, closeStorage, err := openStorage(ctx, o, log, true)
	if err != nil {
		return nil, nil, err
	}
	cl.storage = st
	pg, ok := st.(*storage.Postgres)
	switch {
	case ok:
		cl.kind, cl.node = "postgres", pg.Owner()
	case st != nil:
		cl.kind = "directory"
	}
	if !ok {
		return cl, closeStorage, nil
	}
	cl.monitor = storage.StartMonitor(pg, 0)
	if secret != nil {
		cl.tickets, err = storage.NewTicketKeys(pg, secret)
		if err == nil {
			err = cl.tickets.Verify(ctx)
		}
		if err != nil {
			cl.monitor.Stop()
			closeStorage()
			return nil, nil, config.KeyError("storage_key_file", "%s", strings.TrimPrefix(err.Error(), "storage: "))
		}
		log.Info("session-ticket keys shared through the storage", "storage", pg.String())
	}
	return cl, func() { cl.monitor.Stop(); closeStorage() }, nil
}

// ticketKeys is the shared ring source for the servers, or nil.
func (cl *clusterState) ticketKeys() tlsadapter.TicketKeySource {
	if cl == nil || cl.tickets == nil {
		return nil
	}
	return cl.tickets
}

// status is the cluster part of a server's status; term gives the
// server's terminator (nil while stopped).
func (cl *clusterState) status(term func() *tlsadapter.Terminator) apps.ClusterStatus {
	var s apps.ClusterStatus
	if cl == nil {
		return s
	}
	s.Node, s.Storage = cl.node, cl.kind
	if cl.monitor != nil {
		h := cl.monitor.Health()
		s.StorageUp, s.StorageLatency, s.StorageChecked = h.Up, h.Latency.Seconds(), h.Checked
		s.StorageOutages, s.StorageError, s.DownSince = h.Outages, h.LastError, h.DownSince
		for _, l := range h.Locks {
			s.Locks = append(s.Locks, apps.LockStatus{Name: l.Name, Owner: l.Owner, Expires: l.Expires})
		}
	}
	if t := term(); t != nil && t.Scheme() == "https" {
		s.TicketKeysRotated, s.TicketKeysShared = t.TicketKeysRotated()
	}
	return s
}

// checkTicketKeys is the line `tlsedge check` prints for the shared
// session-ticket keys: the stored rings open with storage_key_file, so this
// node would share them rather than be refused at start.
func checkTicketKeys(ctx context.Context, o *Options, st certmagic.Storage, out io.Writer) error {
	pg, ok := st.(*storage.Postgres)
	if !ok || o.Process.StorageKeyFile == "" || !usesTickets(o) {
		return nil
	}
	secret, err := storage.ReadSecretFile(o.Process.StorageKeyFile)
	if err == nil {
		var tk *storage.TicketKeys
		if tk, err = storage.NewTicketKeys(pg, secret); err == nil {
			err = tk.Verify(ctx)
		}
	}
	if err != nil {
		msg := strings.TrimPrefix(err.Error(), "storage: ")
		fmt.Fprintln(out, "FAIL storage ticket keys: "+msg)
		return config.KeyError("storage_key_file", "%s", msg)
	}
	fmt.Fprintln(out, "ok   storage ticket keys: the stored session-ticket keys open with storage_key_file")
	return nil
}
