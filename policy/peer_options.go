package policy

// PeerOptions are the peercreds_* options of one server (or mount).
type PeerOptions struct{}
