package policy

// PeerOptions are the peercreds_* options of one server (or mount).
type PeerOptions struct {
	Peercreds        bool `opt:"peercreds" default:"false" group:"Peer credentials" help:"read the UNIX-socket client's pid, uid and gid (SO_PEERCRED)"`
	PeercredsResolve bool `opt:"peercreds_resolve" default:"false" group:"Peer credentials" help:"also resolve the client's user and group names"`
}
