package tlsadapter

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/caddyserver/certmagic"
)

// ACMECheck is one line of `tlsedge check` for the acme module.
type ACMECheck struct {
	What   string // "storage", "ca", or "name example.com"
	OK     bool
	Detail string
	Name   *ACMENameState // set for name checks
}

// CheckACME inspects what the acme module would use without starting it:
// storage permissions (directories 0700, keys 0600, nothing group- or
// world-writable), CA reachability (GET the directory), and each name in
// acme_domains as found in storage. It never places an order. The error is
// for options that cannot be checked at all; failed checks are results.
func CheckACME(ctx context.Context, p Params) ([]ACMECheck, error) {
	o := p.Options.ACME.withDefaults()
	if err := o.ValidateInUse(); err != nil {
		return nil, fmt.Errorf("tlsadapter: acme options: %w", err)
	}
	store, err := acmeStorage(o, p)
	if err != nil {
		return nil, err
	}
	var out []ACMECheck
	if fs, ok := store.(*certmagic.FileStorage); ok {
		out = append(out, checkStorage(fs.Path))
	} else {
		// A shared storage is checked once for the process (tlsedge
		// check's storage lines), not per server.
		out = append(out, ACMECheck{What: "storage", OK: true, Detail: describeStorage(store) + " (engine.storage)"})
	}

	ca := ACMECheck{What: "ca"}
	if err := checkDirectory(ctx, o); err != nil {
		ca.Detail = err.Error()
	} else {
		ca.OK, ca.Detail = true, "directory reachable at "+o.directory()
	}
	out = append(out, ca)

	issuerKey := certmagic.NewACMEIssuer(&certmagic.Config{}, certmagic.ACMEIssuer{CA: o.directory()}).IssuerKey()
	now := time.Now()
	for _, name := range o.Domains {
		name = strings.ToLower(name)
		c := ACMECheck{What: "name " + name}
		st := ACMENameState{Name: name, State: "pending"}
		data, err := store.Load(ctx, certmagic.StorageKeys.SiteCert(issuerKey, name))
		switch {
		case errors.Is(err, fs.ErrNotExist):
			c.OK, c.Detail = true, "no certificate yet; obtained at next start"
		case err != nil:
			st.State, st.Detail = "error", err.Error()
			c.Detail = err.Error()
		default:
			leaf, perr := parseLeafPEM(data)
			if perr != nil {
				st.State, st.Detail = "error", perr.Error()
				c.Detail = perr.Error()
				break
			}
			st = nameState(name, leaf, float64(o.RenewWindow), now)
			c.OK = st.State != "expired"
			c.Detail = fmt.Sprintf("%s, expires %s (%.1f days left)", st.State, st.NotAfter.UTC().Format(time.RFC3339), st.DaysLeft)
		}
		c.Name = &st
		out = append(out, c)
	}
	return out, nil
}

// checkStorage walks dir: directories must not be readable by others, keys
// must be 0600 (certmagic writes them so), nothing may be writable by others.
func checkStorage(dir string) ACMECheck {
	c := ACMECheck{What: "storage"}
	fi, err := os.Stat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		c.OK, c.Detail = true, dir+" does not exist yet; created 0700 at start"
		return c
	}
	if err != nil {
		c.Detail = err.Error()
		return c
	}
	if !fi.IsDir() {
		c.Detail = dir + " is not a directory"
		return c
	}
	var problems []string
	werr := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			problems = append(problems, err.Error())
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return nil
		}
		perm := info.Mode().Perm()
		switch {
		case d.IsDir() && perm&0o077 != 0:
			problems = append(problems, fmt.Sprintf("%s is %s (want 0700)", path, perm))
		case !d.IsDir() && strings.HasSuffix(path, ".key") && perm&0o077 != 0:
			problems = append(problems, fmt.Sprintf("%s is %s (want 0600)", path, perm))
		case perm&0o022 != 0:
			problems = append(problems, fmt.Sprintf("%s is writable by others (%s)", path, perm))
		}
		return nil
	})
	if werr != nil {
		problems = append(problems, werr.Error())
	}
	if len(problems) > 0 {
		c.Detail = strings.Join(problems, "; ")
		return c
	}
	c.OK, c.Detail = true, dir+": permissions private"
	return c
}

// checkDirectory GETs the ACME directory and checks it names newOrder.
func checkDirectory(ctx context.Context, o ACMEOptions) error {
	roots, err := loadCARoots(o.CARoot)
	if err != nil {
		return err
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}, Proxy: http.ProxyFromEnvironment}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, o.directory(), nil)
	if err != nil {
		return fmt.Errorf("acme_ca: %w", err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("acme_ca: CA unreachable: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("acme_ca: GET %s: %s", o.directory(), resp.Status)
	}
	var dir struct {
		NewOrder string `json:"newOrder"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&dir); err != nil || dir.NewOrder == "" {
		return fmt.Errorf("acme_ca: %s is not an ACME directory", o.directory())
	}
	return nil
}

// parseLeafPEM returns the first certificate in a PEM chain.
func parseLeafPEM(data []byte) (*x509.Certificate, error) {
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return nil, errors.New("no certificate in stored PEM")
		}
		if b.Type == "CERTIFICATE" {
			return x509.ParseCertificate(b.Bytes)
		}
	}
}

// String is the check as `tlsedge check` prints it: "ok" or "FAIL", what, detail.
func (c ACMECheck) String() string {
	status := "ok  "
	if !c.OK {
		status = "FAIL"
	}
	return fmt.Sprintf("%s acme %s: %s", status, c.What, c.Detail)
}
