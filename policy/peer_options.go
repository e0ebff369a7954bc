package policy

// PeerOptions are the peercreds_* options of one server (or mount).
//
// The four allow-lists combine with OR: a peer is admitted when it matches
// any entry of any non-empty list. All lists empty admits everyone. A
// non-empty list fails closed: a connection without peer credentials (a TCP
// client, or an OS where they cannot be read) is denied, so lists belong on
// servers that listen only on UNIX sockets.
type PeerOptions struct {
	Peercreds        bool `opt:"peercreds" default:"false" group:"Peer credentials" help:"read the UNIX-socket client's pid, uid and gid (SO_PEERCRED)"`
	PeercredsResolve bool `opt:"peercreds_resolve" default:"false" group:"Peer credentials" help:"also resolve the client's user and group names"`

	// Numeric IDs match the effective uid and gid the kernel reported at
	// connect time; no user database is consulted.
	PeercredsAllowUID []string `opt:"peercreds_allow_uid" group:"Peer credentials" help:"uids admitted at accept (empty: any; set: others are closed before a byte is read)"`
	PeercredsAllowGID []string `opt:"peercreds_allow_gid" group:"Peer credentials" help:"gids admitted at accept, matched against the peer's effective gid"`
	// Names are matched after resolution: the user name of the peer's uid,
	// and the name of its gid or of any group the user database lists the
	// user in. They work without peercreds_resolve (the policy resolves).
	PeercredsAllowUser  []string `opt:"peercreds_allow_user" group:"Peer credentials" help:"user names admitted at accept"`
	PeercredsAllowGroup []string `opt:"peercreds_allow_group" group:"Peer credentials" help:"group names admitted at accept (the peer's gid or any group its user belongs to)"`

	// PeercredsMountAllow restricts URL path prefixes further, per request.
	// Each entry is PREFIX=TERM[ TERM...], TERM one of uid:N, gid:N,
	// user:NAME, group:NAME, e.g. "/admin=uid:0 group:wheel". The longest
	// matching prefix decides; a peer matching none of its terms gets 403.
	PeercredsMountAllow []string `opt:"peercreds_mount_allow" group:"Peer credentials" help:"per-path rules PREFIX=TERM[ TERM...], TERM uid:N, gid:N, user:NAME or group:NAME; longest prefix wins, others get 403"`
}
