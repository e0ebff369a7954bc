package policy

import (
	"crypto/tls"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// ErrCipherString is wrapped by every error from ParseCipherString.
var ErrCipherString = errors.New("bad cipher string")

// suite is what the cipher-string language can say about one of Go's TLS 1.0-1.2
// cipher suites. TLS 1.3 suites are not configurable in Go (all three are always
// on, and all are AEAD with forward secrecy), so they never appear here.
type suite struct {
	id       uint16
	name     string // OpenSSL name
	kx       string // key exchange: "ECDHE" or "RSA" (static, no forward secrecy)
	au       string // authentication: "RSA" or "ECDSA"
	enc      string // "AESGCM", "AES", "CHACHA20", "3DES", "RC4"
	bits     int    // symmetric key bits, for @STRENGTH
	mac      string // "AEAD", "SHA1", "SHA256", "SHA384"
	insecure bool   // broken: RC4, 3DES
}

// suites is every TLS 1.2-and-older suite Go implements, in the order OpenSSL
// would rank them (forward secrecy, AEAD, then strength).
var suites = []suite{
	{tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE", "ECDSA", "AESGCM", 256, "AEAD", false},
	{tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384, "ECDHE-RSA-AES256-GCM-SHA384", "ECDHE", "RSA", "AESGCM", 256, "AEAD", false},
	{tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE", "ECDSA", "CHACHA20", 256, "AEAD", false},
	{tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256, "ECDHE-RSA-CHACHA20-POLY1305", "ECDHE", "RSA", "CHACHA20", 256, "AEAD", false},
	{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE", "ECDSA", "AESGCM", 128, "AEAD", false},
	{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, "ECDHE-RSA-AES128-GCM-SHA256", "ECDHE", "RSA", "AESGCM", 128, "AEAD", false},
	{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256, "ECDHE-ECDSA-AES128-SHA256", "ECDHE", "ECDSA", "AES", 128, "SHA256", false},
	{tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256, "ECDHE-RSA-AES128-SHA256", "ECDHE", "RSA", "AES", 128, "SHA256", false},
	{tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA, "ECDHE-ECDSA-AES256-SHA", "ECDHE", "ECDSA", "AES", 256, "SHA1", false},
	{tls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA, "ECDHE-RSA-AES256-SHA", "ECDHE", "RSA", "AES", 256, "SHA1", false},
	{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, "ECDHE-ECDSA-AES128-SHA", "ECDHE", "ECDSA", "AES", 128, "SHA1", false},
	{tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA, "ECDHE-RSA-AES128-SHA", "ECDHE", "RSA", "AES", 128, "SHA1", false},
	{tls.TLS_RSA_WITH_AES_256_GCM_SHA384, "AES256-GCM-SHA384", "RSA", "RSA", "AESGCM", 256, "AEAD", false},
	{tls.TLS_RSA_WITH_AES_128_GCM_SHA256, "AES128-GCM-SHA256", "RSA", "RSA", "AESGCM", 128, "AEAD", false},
	{tls.TLS_RSA_WITH_AES_128_CBC_SHA256, "AES128-SHA256", "RSA", "RSA", "AES", 128, "SHA256", false},
	{tls.TLS_RSA_WITH_AES_256_CBC_SHA, "AES256-SHA", "RSA", "RSA", "AES", 256, "SHA1", false},
	{tls.TLS_RSA_WITH_AES_128_CBC_SHA, "AES128-SHA", "RSA", "RSA", "AES", 128, "SHA1", false},
	{tls.TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA, "ECDHE-RSA-DES-CBC3-SHA", "ECDHE", "RSA", "3DES", 112, "SHA1", true},
	{tls.TLS_RSA_WITH_3DES_EDE_CBC_SHA, "DES-CBC3-SHA", "RSA", "RSA", "3DES", 112, "SHA1", true},
	{tls.TLS_ECDHE_ECDSA_WITH_RC4_128_SHA, "ECDHE-ECDSA-RC4-SHA", "ECDHE", "ECDSA", "RC4", 128, "SHA1", true},
	{tls.TLS_ECDHE_RSA_WITH_RC4_128_SHA, "ECDHE-RSA-RC4-SHA", "ECDHE", "RSA", "RC4", 128, "SHA1", true},
	{tls.TLS_RSA_WITH_RC4_128_SHA, "RC4-SHA", "RSA", "RSA", "RC4", 128, "SHA1", true},
}

// DefaultCipherString is what an empty ssl_ciphers means: AEAD suites with
// forward secrecy only. TLS 1.3 suites are always AEAD with forward secrecy.
const DefaultCipherString = "ECDHE+AESGCM:ECDHE+CHACHA20"

// aliases maps OpenSSL cipher-string words onto predicates over Go's suites.
// Words OpenSSL knows for things Go does not implement (DHE, CAMELLIA, PSK...)
// match nothing rather than failing, so existing nginx strings keep working.
// Expanding an alias never adds a broken suite (RC4, 3DES): those come only
// from naming them, which is refused.
var aliases = map[string]func(s suite) bool{
	"ALL":      func(s suite) bool { return true },
	"HIGH":     func(s suite) bool { return true },
	"DEFAULT":  func(s suite) bool { return s.kx == "ECDHE" && s.mac == "AEAD" },
	"ECDHE":    func(s suite) bool { return s.kx == "ECDHE" },
	"EECDH":    func(s suite) bool { return s.kx == "ECDHE" },
	"ECDH":     func(s suite) bool { return s.kx == "ECDHE" },
	"kECDHE":   func(s suite) bool { return s.kx == "ECDHE" },
	"kEECDH":   func(s suite) bool { return s.kx == "ECDHE" },
	"AECDSA":   func(s suite) bool { return s.au == "ECDSA" },
	"aECDSA":   func(s suite) bool { return s.au == "ECDSA" },
	"ECDSA":    func(s suite) bool { return s.au == "ECDSA" },
	"aRSA":     func(s suite) bool { return s.au == "RSA" },
	"kRSA":     func(s suite) bool { return s.kx == "RSA" },
	"RSA":      func(s suite) bool { return s.kx == "RSA" }, // OpenSSL 3: key exchange only
	"AES":      func(s suite) bool { return s.enc == "AES" || s.enc == "AESGCM" },
	"AES128":   func(s suite) bool { return (s.enc == "AES" || s.enc == "AESGCM") && s.bits == 128 },
	"AES256":   func(s suite) bool { return (s.enc == "AES" || s.enc == "AESGCM") && s.bits == 256 },
	"AESGCM":   func(s suite) bool { return s.enc == "AESGCM" },
	"CHACHA20": func(s suite) bool { return s.enc == "CHACHA20" },
	"AEAD":     func(s suite) bool { return s.mac == "AEAD" },
	"SHA1":     func(s suite) bool { return s.mac == "SHA1" },
	"SHA":      func(s suite) bool { return s.mac == "SHA1" },
	"SHA256":   func(s suite) bool { return s.mac == "SHA256" }, // the MAC, as in OpenSSL: not GCM's PRF hash
	"SHA384":   func(s suite) bool { return s.mac == "SHA384" },
	"TLSv1.2":  func(s suite) bool { return s.mac == "AEAD" || s.mac == "SHA256" || s.mac == "SHA384" },
	"TLSv1":    func(s suite) bool { return s.mac == "SHA1" },
	"SSLv3":    func(s suite) bool { return s.mac == "SHA1" },
	"TLSv1.0":  func(s suite) bool { return s.mac == "SHA1" },
	"FIPS":     func(s suite) bool { return s.enc == "AES" || s.enc == "AESGCM" },
}

// nothing are OpenSSL words for ciphers Go does not implement: they select
// nothing. Negating them is common and harmless.
var nothing = map[string]bool{
	"DH": true, "DHE": true, "EDH": true, "kDHE": true, "kEDH": true, "kDH": true, "aDH": true,
	"DSS": true, "aDSS": true, "PSK": true, "kPSK": true, "aPSK": true, "kECDHEPSK": true,
	"kDHEPSK": true, "kRSAPSK": true, "SRP": true, "kSRP": true, "aSRP": true,
	"CAMELLIA": true, "CAMELLIA128": true, "CAMELLIA256": true, "ARIA": true, "ARIA128": true,
	"ARIA256": true, "SEED": true, "IDEA": true, "AESCCM": true, "AESCCM8": true, "CCM": true,
	"CCM8": true, "GOST": true, "kGOST": true, "aGOST": true, "GOST89MAC": true, "GOST94": true,
	"MEDIUM": true, "COMPLEMENTOFDEFAULT": true, "COMPLEMENTOFALL": true, "SUITEB128": true,
	"SUITEB128ONLY": true, "SUITEB192": true, "kECDH": true, "aECDH": true, "CBC": true,
	"AESCCM128": true, "AESCCM256": true,
}

// broken are words that select only broken or unauthenticated ciphers. Naming
// one positively is an error; negating it ("!RC4") is fine.
var broken = map[string]string{
	"RC4": "RC4 is broken (RFC 7465)", "3DES": "3DES is weak (Sweet32)", "DES": "DES is broken",
	"NULL": "it has no encryption", "eNULL": "it has no encryption", "aNULL": "it has no authentication",
	"ADH": "it has no authentication", "AECDH": "it has no authentication", "EXPORT": "export ciphers are broken",
	"EXP": "export ciphers are broken", "LOW": "low-strength ciphers are broken", "MD5": "MD5 is broken",
	"RC2": "RC2 is broken", "EXPORT40": "export ciphers are broken", "EXPORT56": "export ciphers are broken",
}

// nameWords is the vocabulary of OpenSSL cipher names, used to tell a real
// OpenSSL name that Go lacks (DHE-RSA-AES128-GCM-SHA256: skipped) from a typo
// (ECDHE-RSA-AES128-GCM-SHA25: error).
var nameWords = map[string]bool{
	"DHE": true, "EDH": true, "ECDHE": true, "ECDH": true, "RSA": true, "ECDSA": true, "DSS": true,
	"PSK": true, "SRP": true, "AES128": true, "AES256": true, "AES": true, "GCM": true, "CCM": true,
	"CCM8": true, "CHACHA20": true, "POLY1305": true, "SHA": true, "SHA256": true, "SHA384": true,
	"CAMELLIA128": true, "CAMELLIA256": true, "ARIA128": true, "ARIA256": true, "SEED": true,
	"IDEA": true, "CBC": true, "CBC3": true, "DES": true, "RC4": true, "RC2": true, "MD5": true,
	"NULL": true, "EXP": true, "EXP1024": true, "ADH": true, "AECDH": true, "CBC40": true, "40": true,
}

// brokenNameWords mark an OpenSSL cipher name as broken.
var brokenNameWords = map[string]bool{
	"RC4": true, "RC2": true, "DES": true, "CBC3": true, "MD5": true, "NULL": true,
	"EXP": true, "EXP1024": true, "ADH": true, "AECDH": true, "CBC40": true,
}

// tls13Names are the TLS 1.3 suite names OpenSSL users list in ssl_ciphers
// (or ssl_conf_command Ciphersuites). Go always enables all three.
var tls13Names = map[string]bool{
	"TLS_AES_128_GCM_SHA256": true, "TLS_AES_256_GCM_SHA384": true, "TLS_CHACHA20_POLY1305_SHA256": true,
	"TLS_AES_128_CCM_SHA256": true, "TLS_AES_128_CCM_8_SHA256": true,
}

// CipherSelection is the result of parsing an ssl_ciphers string.
type CipherSelection struct {
	// Suites are the selected TLS 1.0-1.2 suites in the string's order. Go
	// ignores the order and applies its own preference; TLS 1.3 suites are
	// not configurable and always enabled.
	Suites []uint16
	// Notes explain tokens that were accepted but had no effect (an OpenSSL
	// cipher Go does not implement, a TLS 1.3 suite name, @SECLEVEL).
	Notes []string
}

// CipherSuites parses an OpenSSL cipher string (the nginx ssl_ciphers syntax)
// into Go's TLS 1.0-1.2 suite IDs. An empty string yields the default:
// forward-secret AEAD suites only.
func CipherSuites(s string) ([]uint16, error) {
	sel, err := ParseCipherString(s)
	if err != nil {
		return nil, err
	}
	return sel.Suites, nil
}

// ParseCipherString parses s the way OpenSSL does: tokens separated by ':',
// ',' or spaces; "A+B" selects what both A and B select; a leading '!' removes
// suites for good, '-' removes them for now, '+' moves them to the end;
// "@STRENGTH" sorts by key length. Unknown words, and words that would select
// broken suites, are errors naming the token.
func ParseCipherString(s string) (CipherSelection, error) {
	var sel CipherSelection
	if strings.TrimSpace(s) == "" {
		s = DefaultCipherString
	}
	type entry struct {
		s      suite
		active bool
		banned bool
	}
	// order is the working list; it starts in canonical order, all inactive,
	// and added suites move to the end the way OpenSSL appends them.
	order := make([]*entry, len(suites))
	for i, su := range suites {
		order[i] = &entry{s: su}
	}
	var errs []error
	tokens := strings.FieldsFunc(s, func(r rune) bool { return r == ':' || r == ',' || r == ' ' || r == ';' })
	for _, tok := range tokens {
		if strings.HasPrefix(tok, "@") {
			switch {
			case tok == "@STRENGTH":
				slices.SortStableFunc(order, func(a, b *entry) int { return b.s.bits - a.s.bits })
			case strings.HasPrefix(tok, "@SECLEVEL="):
				sel.Notes = append(sel.Notes, tok+": ignored; Go's suites all meet security level 2")
			default:
				errs = append(errs, fmt.Errorf("%w: unknown directive %q (use @STRENGTH or @SECLEVEL=n)", ErrCipherString, tok))
			}
			continue
		}
		op := byte(0)
		word := tok
		if word[0] == '!' || word[0] == '-' || word[0] == '+' {
			op, word = word[0], word[1:]
		}
		if word == "" {
			errs = append(errs, fmt.Errorf("%w: empty token %q", ErrCipherString, tok))
			continue
		}
		match, note, err := compile(word, op == 0)
		if err != nil {
			errs = append(errs, fmt.Errorf("%w: token %q: %w", ErrCipherString, tok, err))
			continue
		}
		if note != "" {
			sel.Notes = append(sel.Notes, fmt.Sprintf("%s: %s", tok, note))
		}
		switch op {
		case '!':
			for _, e := range order {
				if match(e.s) {
					e.banned, e.active = true, false
				}
			}
		case '-':
			for _, e := range order {
				if match(e.s) {
					e.active = false
				}
			}
		case '+':
			var moved, kept []*entry
			for _, e := range order {
				if e.active && match(e.s) {
					moved = append(moved, e)
				} else {
					kept = append(kept, e)
				}
			}
			order = append(kept, moved...)
		default:
			var added, kept []*entry
			for _, e := range order {
				if !e.active && !e.banned && !e.s.insecure && match(e.s) {
					e.active = true
					added = append(added, e)
				} else {
					kept = append(kept, e)
				}
			}
			order = append(kept, added...)
		}
	}
	if len(errs) > 0 {
		return CipherSelection{}, errors.Join(errs...)
	}
	for _, e := range order {
		if e.active {
			sel.Suites = append(sel.Suites, e.s.id)
		}
	}
	if len(sel.Suites) == 0 {
		return CipherSelection{}, fmt.Errorf("%w: %q selects no cipher suite Go implements for TLS 1.2 (TLS 1.3 would still work, but TLS 1.2 clients could not connect)", ErrCipherString, s)
	}
	return sel, nil
}

// compile turns one word ("ECDHE+AESGCM", "ECDHE-RSA-AES128-GCM-SHA256",
// "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256") into a predicate. positive is
// false under '!', '-' and '+', where broken words are allowed.
func compile(word string, positive bool) (match func(suite) bool, note string, err error) {
	parts := strings.Split(word, "+")
	preds := make([]func(suite) bool, 0, len(parts))
	for _, p := range parts {
		if p == "" {
			return nil, "", errors.New("empty part in a '+' combination")
		}
		pred, n, err := compileWord(p, positive)
		if err != nil {
			return nil, "", err
		}
		if n != "" {
			note = n
		}
		preds = append(preds, pred)
	}
	return func(s suite) bool {
		for _, p := range preds {
			if !p(s) {
				return false
			}
		}
		return true
	}, note, nil
}

func none(suite) bool { return false }

func compileWord(w string, positive bool) (func(suite) bool, string, error) {
	if pred, ok := aliases[w]; ok {
		return pred, "", nil
	}
	if reason, ok := broken[w]; ok {
		if positive {
			return nil, "", fmt.Errorf("refused: %s; remove it or write !%s", reason, w)
		}
		return none, "", nil
	}
	if nothing[w] {
		return none, "", nil
	}
	for _, su := range suites {
		if w == su.name || w == tls.CipherSuiteName(su.id) {
			if su.insecure && positive {
				return nil, "", fmt.Errorf("refused: %s is insecure (%s); remove it", w, su.enc)
			}
			id := su.id
			return func(s suite) bool { return s.id == id }, "", nil
		}
	}
	if tls13Names[w] {
		return none, "TLS 1.3 suites are not configurable in Go; all of them stay enabled", nil
	}
	if words := strings.Split(w, "-"); len(words) > 1 {
		known, bad := true, false
		for _, x := range words {
			known = known && nameWords[x]
			bad = bad || brokenNameWords[x]
		}
		if known {
			if bad && positive {
				return nil, "", fmt.Errorf("refused: %s is a broken cipher; remove it", w)
			}
			return none, "not implemented by Go's TLS; skipped", nil
		}
	}
	return nil, "", errors.New("unknown cipher or alias (see `openssl ciphers -v` for the syntax)")
}

// CipherSuiteNames returns the OpenSSL names of ids (IANA names for anything
// unknown), in order: what `tlsedge check` prints.
func CipherSuiteNames(ids []uint16) []string {
	names := make([]string, 0, len(ids))
	for _, id := range ids {
		n := tls.CipherSuiteName(id)
		for _, su := range suites {
			if su.id == id {
				n = su.name
			}
		}
		names = append(names, n)
	}
	return names
}

// TLS13CipherSuiteNames are the TLS 1.3 suites Go always offers, for printing
// next to CipherSuiteNames.
func TLS13CipherSuiteNames() []string {
	return []string{"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"}
}

// ForwardSecretAEAD reports whether id is an ECDHE suite with an AEAD cipher.
func ForwardSecretAEAD(id uint16) bool {
	for _, su := range suites {
		if su.id == id {
			return su.kx == "ECDHE" && su.mac == "AEAD"
		}
	}
	return false
}
