package apps

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// ClusterStatus is this node's part in a cluster of nodes sharing
// engine.storage: who it is, how the shared storage answers, who holds
// which lock, and the server's session-ticket keys. The command assembles
// it (cli) from the storage and the server's terminator.
type ClusterStatus struct {
	// Node names this process the way the lock table does (host/pid/random
	// with PostgreSQL storage, host/pid otherwise).
	Node string `json:"node"`
	// Storage is "postgres", "directory" or "files" (under data_dir).
	Storage string `json:"storage"`
	// The fields below are set with PostgreSQL storage only, from the
	// last check (every second).
	StorageUp      bool         `json:"storage_up"`
	StorageLatency float64      `json:"storage_latency_seconds,omitempty"` // the last check that answered
	StorageChecked time.Time    `json:"storage_checked,omitzero"`
	StorageOutages uint64       `json:"storage_outages"` // each outage once, however long
	StorageError   string       `json:"storage_error,omitempty"`
	DownSince      time.Time    `json:"storage_down_since,omitzero"`
	Locks          []LockStatus `json:"locks,omitempty"` // as last seen: stale while the storage is down
	// TicketKeysRotated is when the session-ticket key sealing new tickets
	// was made; TicketKeysShared says it is the cluster's ring rather than
	// this process's own key.
	TicketKeysRotated time.Time `json:"ticket_keys_rotated,omitzero"`
	TicketKeysShared  bool      `json:"ticket_keys_shared"`
}

// LockStatus is one lock held in the shared storage.
type LockStatus struct {
	Name    string    `json:"name"`
	Owner   string    `json:"owner"` // a Node
	Expires time.Time `json:"expires"`
}

var (
	descNodeInfo      = prometheus.NewDesc("tlsedge_node_info", "This node: its id (as in the lock table) and the kind of engine.storage; always 1.", []string{"node", "storage"}, nil)
	descStorageUp     = prometheus.NewDesc("tlsedge_storage_up", "1 when the shared storage (PostgreSQL) answered its last check, else 0.", nil, nil)
	descStorageLat    = prometheus.NewDesc("tlsedge_storage_latency_seconds", "How long the shared storage took to answer its last check.", nil, nil)
	descStorageOut    = prometheus.NewDesc("tlsedge_storage_outages_total", "Times the shared storage stopped answering (each outage once, however long).", nil, nil)
	descStorageLock   = prometheus.NewDesc("tlsedge_storage_lock_expiry_timestamp_seconds", "Locks held in the shared storage, by name and the node holding them: when the lease runs out unless renewed, as a Unix time.", []string{"name", "owner"}, nil)
	descTicketRotated = prometheus.NewDesc("tlsedge_tls_ticket_keys_rotated_timestamp_seconds", "When the session-ticket key sealing new tickets was made, as a Unix time; shared=\"true\" when it is the cluster's ring.", []string{"server", "shared"}, nil)
)

var clusterDescs = []*prometheus.Desc{descNodeInfo, descStorageUp, descStorageLat, descStorageOut, descStorageLock, descTicketRotated}

func collectCluster(ch chan<- prometheus.Metric, server string, c ClusterStatus) {
	ch <- prometheus.MustNewConstMetric(descNodeInfo, prometheus.GaugeValue, 1, c.Node, c.Storage)
	if c.Storage == "postgres" {
		up := 0.0
		if c.StorageUp {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(descStorageUp, prometheus.GaugeValue, up)
		ch <- prometheus.MustNewConstMetric(descStorageLat, prometheus.GaugeValue, c.StorageLatency)
		ch <- prometheus.MustNewConstMetric(descStorageOut, prometheus.CounterValue, float64(c.StorageOutages))
		seen := map[string]bool{}
		for _, l := range c.Locks {
			if !seen[l.Name] {
				seen[l.Name] = true
				ch <- prometheus.MustNewConstMetric(descStorageLock, prometheus.GaugeValue, float64(l.Expires.Unix()), l.Name, l.Owner)
			}
		}
	}
	if !c.TicketKeysRotated.IsZero() {
		shared := "false"
		if c.TicketKeysShared {
			shared = "true"
		}
		ch <- prometheus.MustNewConstMetric(descTicketRotated, prometheus.GaugeValue, float64(c.TicketKeysRotated.UnixNano())/1e9, server, shared)
	}
}
