package storage

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Session-ticket key rings.
//
// A TLS server's session tickets are encrypted with keys that every node of a
// cluster must hold, or a client that resumes on another node pays a full
// handshake. Each server has its own ring, so a ticket one server issued
// (say an mTLS one) never resumes on another. A ring is one row of
// tlsedge_kv, at ticketKeyPrefix+server, holding the keys newest first,
// sealed with AES-256-GCM under a key derived from the storage secret
// (engine.storage_key_file): a reader of the database alone cannot forge or
// decrypt tickets. The row's key is the additional data, so a ring copied
// onto another server's row does not open.
//
// Rotation is made by whichever node holds the ring's lock: a node that
// finds the newest key older than the rotation period (by the database's
// clock) takes the lock, reads again, and writes a ring with a fresh key in
// front and the previous one kept, so tickets issued before the rotation
// still resume for one more period. The others pick the new ring up at their
// next read.

// TicketKeysKept is how many keys a ring holds: the current one, which
// encrypts new tickets, and the one before, which still decrypts tickets
// issued during the previous period.
const TicketKeysKept = 2

// ticketKeyPrefix is where rings live in tlsedge_kv (outside certmagic's
// own key space).
const ticketKeyPrefix = "tlsedge/ticket_keys/"

// ErrTicketSecret is returned when a stored ring does not open with this
// node's secret: the nodes were given different storage_key_file contents.
// The ring is then never overwritten.
var ErrTicketSecret = errors.New("the stored session-ticket keys do not decrypt with this node's storage_key_file: give every node the same file")

// errRingPending: no ring yet and another node is making it.
var errRingPending = errors.New("another node is making the first session-ticket key")

// SecretSize is the least number of bytes a storage secret holds.
const SecretSize = 32

// TicketKeys keeps session-ticket key rings in a Postgres storage. It is
// safe for concurrent use.
type TicketKeys struct {
	pg   *Postgres
	aead cipher.AEAD
}

// NewTicketKeys shares rings through pg, sealed under secret (at least
// SecretSize bytes, the same on every node).
func NewTicketKeys(pg *Postgres, secret []byte) (*TicketKeys, error) {
	if len(secret) < SecretSize {
		return nil, fmt.Errorf("storage: the storage secret holds %d bytes; it needs at least %d", len(secret), SecretSize)
	}
	k, err := hkdf.Key(sha256.New, secret, nil, "tlsedge session-ticket key ring v1", 32)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(k)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &TicketKeys{pg: pg, aead: aead}, nil
}

// ReadSecretFile reads engine.storage_key_file: at least SecretSize random
// bytes written as hex or base64 text (`openssl rand -hex 32`). The file
// holds a secret, so it must not be readable by group or others.
func ReadSecretFile(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%s is readable by group or others (mode %v): chmod 600 it", path, fi.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	s := strings.TrimSpace(string(b))
	var secret []byte
	if h, err := hex.DecodeString(s); err == nil {
		secret = h
	} else if d, err := base64.StdEncoding.DecodeString(s); err == nil {
		secret = d
	} else {
		return nil, fmt.Errorf("%s is neither hex nor base64 text: write it with `openssl rand -hex 32`", path)
	}
	if len(secret) < SecretSize {
		return nil, fmt.Errorf("%s holds %d bytes; it needs at least %d: write it with `openssl rand -hex 32`", path, len(secret), SecretSize)
	}
	return secret, nil
}

// TicketKeys returns ring's keys, newest first, and how long ago the newest
// was made; when it is rotation old or more (or the ring does not exist
// yet), the keys are rotated first if this node wins the ring's lock. An
// error means the keys could not be read; the caller keeps the ones it has.
func (tk *TicketKeys) TicketKeys(ctx context.Context, ring string, rotation time.Duration) ([][32]byte, time.Duration, error) {
	name := ticketKeyPrefix + ring
	keys, age, found, err := tk.load(ctx, name)
	if err != nil || found && age < rotation {
		return keys, age, err
	}
	lock := "tlsedge_ticket_keys_" + ring
	ok, err := tk.pg.TryLock(ctx, lock)
	switch {
	case err != nil:
		return nil, 0, err
	case !ok && found:
		return keys, age, nil // another node is rotating: next read has it
	case !ok:
		return tk.awaitRing(ctx, name)
	}
	defer tk.pg.Unlock(context.WithoutCancel(ctx), lock)
	// Read again under the lock: another node may have just rotated.
	keys, age, found, err = tk.load(ctx, name)
	if err != nil || found && age < rotation {
		return keys, age, err
	}
	var k [32]byte
	if _, err := rand.Read(k[:]); err != nil {
		return nil, 0, err
	}
	keys = append([][32]byte{k}, keys...)
	keys = keys[:min(len(keys), TicketKeysKept)]
	if err := tk.pg.Store(ctx, name, tk.seal(name, keys)); err != nil {
		return nil, 0, err
	}
	tk.pg.log.Info("session-ticket keys rotated", "ring", ring, "kept", len(keys))
	return keys, 0, nil
}

// awaitRing waits (a few seconds at most, or until ctx ends) for the ring
// another node is making: nodes started together then all begin with the
// shared key rather than one of their own.
func (tk *TicketKeys) awaitRing(ctx context.Context, name string) ([][32]byte, time.Duration, error) {
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return nil, 0, errRingPending
		case <-time.After(50 * time.Millisecond):
		}
		keys, age, found, err := tk.load(ctx, name)
		if err != nil || found {
			return keys, age, err
		}
	}
	return nil, 0, errRingPending
}

// load reads and opens the ring at name, with its age by the database's
// clock. found is false when there is no ring yet.
func (tk *TicketKeys) load(ctx context.Context, name string) (keys [][32]byte, age time.Duration, found bool, err error) {
	var sealed []byte
	var secs float64
	err = tk.pg.pool.QueryRow(ctx, `SELECT value, extract(epoch FROM now() - modified)::float8 FROM tlsedge_kv WHERE key = $1`, name).Scan(&sealed, &secs)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return nil, 0, false, nil
	case err != nil:
		return nil, 0, false, fmt.Errorf("storage: reading the session-ticket keys: %w", err)
	}
	keys, err = tk.open(name, sealed)
	if err != nil {
		return nil, 0, true, err
	}
	return keys, time.Duration(secs * float64(time.Second)), true, nil
}

// seal encrypts keys for the row name: nonce, then the sealed version byte
// and keys.
func (tk *TicketKeys) seal(name string, keys [][32]byte) []byte {
	plain := make([]byte, 1, 1+32*len(keys))
	plain[0] = 1
	for _, k := range keys {
		plain = append(plain, k[:]...)
	}
	nonce := make([]byte, tk.aead.NonceSize(), tk.aead.NonceSize()+len(plain)+tk.aead.Overhead())
	_, _ = rand.Read(nonce)
	return tk.aead.Seal(nonce, nonce, plain, []byte(name))
}

func (tk *TicketKeys) open(name string, sealed []byte) ([][32]byte, error) {
	n := tk.aead.NonceSize()
	if len(sealed) < n {
		return nil, ErrTicketSecret
	}
	plain, err := tk.aead.Open(nil, sealed[:n], sealed[n:], []byte(name))
	if err != nil {
		return nil, ErrTicketSecret
	}
	if len(plain) < 1+32 || plain[0] != 1 || (len(plain)-1)%32 != 0 {
		return nil, fmt.Errorf("storage: the session-ticket key ring %s has an unknown layout (a newer tlsedge wrote it?)", name)
	}
	var keys [][32]byte
	for b := plain[1:]; len(b) > 0; b = b[32:] {
		keys = append(keys, [32]byte(b[:32]))
	}
	return keys, nil
}

// Verify opens every ring stored so far: a node given another secret than
// the nodes that wrote them learns it at start (ErrTicketSecret), rather
// than serving keys of its own that no other node shares.
func (tk *TicketKeys) Verify(ctx context.Context) error {
	rows, err := tk.pg.pool.Query(ctx, `SELECT key, value FROM tlsedge_kv WHERE starts_with(key, $1)`, ticketKeyPrefix)
	if missingTable(err) {
		return nil // no node has created the schema yet
	}
	if err != nil {
		return fmt.Errorf("storage: reading the session-ticket keys: %w", err)
	}
	type row struct {
		Key   string
		Value []byte
	}
	rings, err := pgx.CollectRows(rows, pgx.RowToStructByPos[row])
	if missingTable(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("storage: reading the session-ticket keys: %w", err)
	}
	for _, r := range rings {
		if _, err := tk.open(r.Key, r.Value); err != nil {
			return err
		}
	}
	return nil
}
