package policy

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// HSTSOptions configure the Strict-Transport-Security header. The zero value
// sends nothing.
type HSTSOptions struct {
	MaxAge            time.Duration // zero: no header
	IncludeSubDomains bool
	Preload           bool // the hstspreload.org list needs max-age >= 1 year and includeSubDomains
}

// preloadMinAge is what hstspreload.org requires.
const preloadMinAge = 365 * 24 * time.Hour

// Validate reports settings that browsers or the preload list would reject.
func (o HSTSOptions) Validate() error {
	var errs []error
	if o.MaxAge < 0 {
		errs = append(errs, fmt.Errorf("ssl_hsts_max_age: %s is negative", o.MaxAge))
	}
	if o.Preload {
		if o.MaxAge < preloadMinAge {
			errs = append(errs, fmt.Errorf("ssl_hsts_preload: needs ssl_hsts_max_age of at least 1 year (8760h), have %s", o.MaxAge))
		}
		if !o.IncludeSubDomains {
			errs = append(errs, errors.New("ssl_hsts_preload: needs ssl_hsts_include_subdomains"))
		}
	}
	return errors.Join(errs...)
}

// Header returns the header value, "" when MaxAge is zero.
func (o HSTSOptions) Header() string {
	if o.MaxAge <= 0 {
		return ""
	}
	v := "max-age=" + strconv.FormatInt(int64(o.MaxAge/time.Second), 10)
	if o.IncludeSubDomains {
		v += "; includeSubDomains"
	}
	if o.Preload {
		v += "; preload"
	}
	return v
}

// HSTS wraps next so that responses to requests that came over TLS carry
// Strict-Transport-Security (RFC 6797 §7.2: never on plain HTTP, where an
// attacker could strip or forge it). A handler's own header is kept.
func HSTS(next http.Handler, o HSTSOptions) http.Handler {
	value := o.Header()
	if value == "" {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS != nil && w.Header().Get("Strict-Transport-Security") == "" {
			w.Header().Set("Strict-Transport-Security", value)
		}
		next.ServeHTTP(w, r)
	})
}
