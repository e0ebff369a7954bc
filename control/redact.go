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
// the password in any URL-shaped string ("https://u:p@host") is masked. v is
// marshalled first, so json struct tags decide the key names.
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

func redactURL(s string) string {
	if !strings.Contains(s, "://") || !strings.Contains(s, "@") {
		return s
	}
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return s
	}
	if _, has := u.User.Password(); has {
		u.User = url.UserPassword(u.User.Username(), Redacted)
		return u.String()
	}
	return s
}
