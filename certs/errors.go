package certs

import "errors"

// Sentinels; errors returned by this package wrap one of them together with
// the file and, where it helps, the position in the file.
var (
	ErrNoCertificate = errors.New("certs: no certificate configured")
	ErrNoKey         = errors.New("certs: no private key found")
	ErrEncryptedKey  = errors.New("certs: private key is encrypted")
	ErrWrongPassword = errors.New("certs: wrong password for the private key")
	ErrCheck         = errors.New("certs: certificate check failed")
)
