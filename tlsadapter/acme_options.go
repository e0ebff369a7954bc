package tlsadapter

// ACMEOptions are the acme_* options used by the acme SSL module.
type ACMEOptions struct{}
