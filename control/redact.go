package control

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
)

// Redacted replaces secret values in what GET /config returns.
const Redacted = "REDACTED"

// secretWords mark a key as secret once the key is lower-cased and stripped
// of '_', '-' and '.', so ssl_private_key, privateKey and acme.eab-hmac-key
// all match. Err on the side of hiding: an admin can read the config file.
var secretWords = []string{"password", "passwd", "passphrase", "secret", "token", "privatekey", "apikey", "hmac", "credential", "cookie", "authorization"}

func secretKey(k string) bool {
	k = strings.NewReplacer("_", "", "-", "", ".", "").Replace(strings.ToLower(k))
	for _, w := range secretWords {
		if strings.Contains(k, w) {
			return true
		}
	}
	return false
}

// Redact returns v as generic JSON (maps, slices, strings, json.Number) with
// secrets hidden: the value of every object key that names a secret
// (password, token, private key...) becomes Redacted unless it is empty, and
// in any URL-shaped string the password ("https://u:p@host"), the query
// values and the fragment are masked (see redactURL). v is marshalled first,
// so json struct tags decide the key names.
func Redact(v any) (any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("control: encoding config: %w", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.UseNumber()
	var g any
	if err := dec.Decode(&g); err != nil {
		return nil, fmt.Errorf("control: decoding config: %w", err)
	}
	return redact(g), nil
}

func redact(v any) any {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if secretKey(k) && !emptyJSON(x) {
				v[k] = Redacted
				continue
			}
			v[k] = redact(x)
		}
		return v
	case []any:
		for i, x := range v {
			v[i] = redact(x)
		}
		return v
	case string:
		return redactURL(v)
	default:
		return v
	}
}

func emptyJSON(v any) bool {
	switch v := v.(type) {
	case nil:
		return true
	case string:
		return v == ""
	case []any:
		return len(v) == 0
	case map[string]any:
		return len(v) == 0
	}
	return false
}

// redactURL masks what a URL-shaped string ("scheme://...") may carry as a
// credential: the password in its userinfo, every query value
// (acme_on_demand_ask = "https://ask/check?token=..." is the usual way to
// hand a service its key), and the fragment. Query keys stay, so the reader
// still sees which parameters are set. A string that has "://" but does not
// parse is hidden whole if it holds '@', '?' or '#': it cannot be cut apart
// safely.
func redactURL(s string) string {
	if !strings.Contains(s, "://") || !strings.ContainsAny(s, "@?#") {
		return s
	}
	u, err := url.Parse(s)
	if err != nil {
		return Redacted
	}
	changed := false
	if u.User != nil {
		if _, has := u.User.Password(); has {
			u.User = url.UserPassword(u.User.Username(), Redacted)
			changed = true
		}
	}
	if u.RawQuery != "" {
		u.RawQuery = redactQuery(u.RawQuery)
		u.ForceQuery = false
		changed = true
	}
	if u.Fragment != "" {
		u.Fragment, u.RawFragment = Redacted, ""
		changed = true
	}
	if !changed {
		return s
	}
	return u.String()
}

// redactQuery replaces each value in a raw query with Redacted, keeping the
// keys in their order; a part with no '=' may itself be the secret and is
// replaced whole.
func redactQuery(q string) string {
	parts := strings.Split(q, "&")
	for i, p := range parts {
		if p == "" {
			continue
		}
		if k, _, ok := strings.Cut(p, "="); ok {
			parts[i] = k + "=" + Redacted
		} else {
			parts[i] = Redacted
		}
	}
	return strings.Join(parts, "&")
}
