package certs

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"

	"tlsedge/internal/boundedread"
)

// PairFiles names the files of one certificate pair.
type PairFiles struct {
	Cert  string // PEM: the leaf first; may hold the intermediates after it
	Key   string // PEM: PKCS#1, PKCS#8 (plain or encrypted) or SEC1
	Chain string // optional PEM of intermediates, served after those in Cert
}

// Origin says where a certificate came from: shown in every finding so the
// operator knows which block of which file to fix.
type Origin struct {
	File  string
	Index int // 1-based position among the CERTIFICATE blocks of File
}

func (o Origin) String() string { return fmt.Sprintf("%s: certificate %d", o.File, o.Index) }

// Pair is a parsed certificate chain with its key. It is immutable.
type Pair struct {
	Files   PairFiles
	TLS     tls.Certificate     // what the handshake serves; Leaf is set
	Chain   []*x509.Certificate // leaf first, in serving order
	Origins []Origin            // Origins[i] is where Chain[i] came from
}

// Leaf is the end-entity certificate.
func (p *Pair) Leaf() *x509.Certificate { return p.Chain[0] }

// KeyMatches reports whether the private key belongs to the leaf.
func (p *Pair) KeyMatches() bool {
	signer, ok := p.TLS.PrivateKey.(crypto.Signer)
	if !ok {
		return false
	}
	pub, ok := p.Leaf().PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	return ok && pub.Equal(signer.Public())
}

// LoadPair reads and parses f. password decrypts an encrypted key; nil means
// none was configured. It only parses: the checks are in CheckPair, so that
// `tlsedge check` can list every problem rather than the first.
func LoadPair(f PairFiles, password []byte) (*Pair, error) {
	if f.Cert == "" {
		return nil, ErrNoCertificate
	}
	p := &Pair{Files: f}
	if err := p.addCerts(f.Cert, true); err != nil {
		return nil, err
	}
	if f.Chain != "" {
		if err := p.addCerts(f.Chain, false); err != nil {
			return nil, err
		}
	}
	keyFile := f.Key
	if keyFile == "" {
		keyFile = f.Cert // a combined PEM, as haproxy writes it
	}
	key, err := loadKey(keyFile, password)
	if err != nil {
		return nil, err
	}
	p.TLS = tls.Certificate{PrivateKey: key, Leaf: p.Chain[0]}
	for _, c := range p.Chain {
		p.TLS.Certificate = append(p.TLS.Certificate, c.Raw)
	}
	return p, nil
}

func (p *Pair) addCerts(file string, leafFile bool) error {
	data, err := boundedread.ReadFile(file)
	if err != nil {
		return fmt.Errorf("certs: reading certificate file: %w", err)
	}
	n := 0
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue // keys and parameters may share the file
		}
		n++
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return fmt.Errorf("certs: %s: certificate %d: %w", file, n, err)
		}
		p.Chain = append(p.Chain, c)
		p.Origins = append(p.Origins, Origin{File: file, Index: n})
	}
	if n == 0 {
		what := "certificate"
		if !leafFile {
			what = "chain"
		}
		return fmt.Errorf("%w: %s %s holds no PEM CERTIFICATE block (is it DER? convert with: openssl x509 -inform der -in %s -out %s.pem)", ErrNoCertificate, what, file, file, file)
	}
	return nil
}

// loadKey returns the first private key in file, in any of the PEM forms
// OpenSSL writes.
func loadKey(file string, password []byte) (crypto.Signer, error) {
	data, err := boundedread.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("certs: reading private key: %w", err)
	}
	n := 0
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		n++
		if !strings.HasSuffix(b.Type, "PRIVATE KEY") {
			continue
		}
		key, err := parseKeyBlock(b, password)
		if err != nil {
			return nil, fmt.Errorf("%s: PEM block %d (%s): %w", file, n, b.Type, err)
		}
		return key, nil
	}
	return nil, fmt.Errorf("%w in %s (want a PEM block ending in PRIVATE KEY)", ErrNoKey, file)
}

func parseKeyBlock(b *pem.Block, password []byte) (crypto.Signer, error) {
	der := b.Bytes
	//lint:ignore SA1019 legacy "Proc-Type: 4,ENCRYPTED" keys are still written by openssl rsa -aes256 -traditional
	if x509.IsEncryptedPEMBlock(b) { //nolint:staticcheck
		if password == nil {
			return nil, fmt.Errorf("%w: set ssl_private_key_password_file, or decrypt it once with: openssl pkey -in KEY -out KEY.plain", ErrEncryptedKey)
		}
		d, err := x509.DecryptPEMBlock(b, password) //nolint:staticcheck
		if err != nil {
			return nil, fmt.Errorf("%w (%v)", ErrWrongPassword, err)
		}
		// A wrong password passes the padding check about once in 256
		// tries and gives garbage: a key that does not parse then means a
		// wrong password, as for PKCS#8 below.
		k, err := parsePlainKey(b.Type, d)
		if err != nil {
			return nil, fmt.Errorf("%w (%v)", ErrWrongPassword, err)
		}
		return k, nil
	}
	if b.Type == "ENCRYPTED PRIVATE KEY" {
		if password == nil {
			return nil, fmt.Errorf("%w: set ssl_private_key_password_file, or decrypt it once with: openssl pkey -in KEY -out KEY.plain", ErrEncryptedKey)
		}
		d, err := decryptPKCS8(der, password)
		if err != nil {
			return nil, err
		}
		k, err := asSigner(x509.ParsePKCS8PrivateKey(d))
		if err != nil {
			return nil, fmt.Errorf("%w (%v)", ErrWrongPassword, err)
		}
		return k, nil
	}
	return parsePlainKey(b.Type, der)
}

// parsePlainKey parses an unencrypted key of PEM type typ.
func parsePlainKey(typ string, der []byte) (crypto.Signer, error) {
	switch typ {
	case "RSA PRIVATE KEY":
		return asSigner(x509.ParsePKCS1PrivateKey(der))
	case "EC PRIVATE KEY":
		return asSigner(x509.ParseECPrivateKey(der))
	case "PRIVATE KEY":
		return asSigner(x509.ParsePKCS8PrivateKey(der))
	}
	return nil, fmt.Errorf("unsupported key type %q (want RSA, EC or PKCS#8 PRIVATE KEY)", typ)
}

func asSigner[K any](k K, err error) (crypto.Signer, error) {
	if err != nil {
		return nil, err
	}
	switch s := any(k).(type) {
	case *rsa.PrivateKey, *ecdsa.PrivateKey, ed25519.PrivateKey:
		return s.(crypto.Signer), nil
	}
	return nil, errors.New("unsupported private key algorithm (want RSA, ECDSA or Ed25519)")
}

// ReadPassword reads a password file: its first line, without the newline.
func ReadPassword(file string) ([]byte, error) {
	if file == "" {
		return nil, nil
	}
	b, err := boundedread.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("certs: reading ssl_private_key_password_file: %w", err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	return []byte(strings.TrimSuffix(line, "\r")), nil
}
