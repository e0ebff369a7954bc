package cli

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"

	"github.com/spf13/pflag"

	"tlsedge/control"
	"tlsedge/server"
)

// policyCmd runs `tlsedge policy explain`: a server's decision on a client
// described by flags, judged from the configuration file the way the running
// server judges it, without one running.
func policyCmd(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 || args[0] != "explain" {
		return errors.New("policy: use tlsedge policy explain --config FILE [--server NAME] [--sni NAME] [--host HOST] [--cert client.pem] [--uid N --gid N] [--exe PATH] [--src IP] [--method M] --path P")
	}
	fs := pflag.NewFlagSet("tlsedge policy explain", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	cfgPath := fs.String("config", "", "the configuration file")
	q, certFile, uid, gid := explainFlags(fs)
	if err := parseFlags(fs, args[1:]); err != nil {
		return fmt.Errorf("policy explain: %w", err)
	}
	if len(fs.Args()) > 0 {
		return fmt.Errorf("policy explain: unexpected argument %q", fs.Args()[0])
	}
	if *cfgPath == "" {
		return errors.New("policy explain: --config FILE is required (the control socket explains against the live configuration: tlsedge ctl explain)")
	}
	o, err := Load([]string{"--config", *cfgPath}, io.Discard)
	if err != nil {
		return err
	}
	if err := o.Validate(); err != nil {
		return err
	}
	if err := fillExplain(q, *certFile, *uid, *gid); err != nil {
		return err
	}
	ex, err := server.Explain(o.Servers(), *q)
	if err != nil {
		return err
	}
	_, err = io.WriteString(stdout, ex.String())
	return err
}

// explainFlags declares the flags describing a client.
func explainFlags(fs *pflag.FlagSet) (q *server.ExplainQuery, certFile, uid, gid *string) {
	q = &server.ExplainQuery{}
	fs.StringVar(&q.Server, "server", "", "the server's name (default: the main server)")
	fs.StringVar(&q.SNI, "sni", "", "server name sent in the TLS handshake (default: --host)")
	fs.StringVar(&q.Host, "host", "", "Host header")
	fs.StringVar(&q.Method, "method", "GET", "request method")
	fs.StringVar(&q.Path, "path", "/", "request path as sent")
	fs.StringVar(&q.Src, "src", "", "the client's IP address")
	fs.StringVar(&q.Exe, "exe", "", "the peer's executable (peer.exe)")
	certFile = fs.String("cert", "", "PEM client certificate, leaf first, intermediates after")
	uid = fs.String("uid", "", "peer uid (UNIX sockets with peercreds)")
	gid = fs.String("gid", "", "peer gid (default: the user's primary group)")
	return
}

func fillExplain(q *server.ExplainQuery, certFile, uid, gid string) error {
	if certFile != "" {
		data, err := os.ReadFile(certFile)
		if err != nil {
			return fmt.Errorf("--cert: %w", err)
		}
		certs, err := parseCerts(data)
		if err != nil {
			return fmt.Errorf("--cert %s: %w", certFile, err)
		}
		q.Certs = certs
	}
	for _, id := range []struct {
		name, v string
		dst     **uint32
	}{{"uid", uid, &q.UID}, {"gid", gid, &q.GID}} {
		if id.v == "" {
			continue
		}
		n, err := strconv.ParseUint(id.v, 10, 32)
		if err != nil {
			return fmt.Errorf("--%s %q: not a numeric id", id.name, id.v)
		}
		v := uint32(n)
		*id.dst = &v
	}
	if q.GID != nil && q.UID == nil {
		return errors.New("--gid needs --uid")
	}
	return nil
}

func parseCerts(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, err
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, errors.New("no PEM certificate in it")
	}
	return certs, nil
}

// ctlExplain runs `tlsedge ctl explain FLAGS`: policy explain against the
// running configuration, over the control socket.
func ctlExplain(ctx context.Context, socket string, args []string, stdout io.Writer) error {
	fs := pflag.NewFlagSet("tlsedge ctl explain", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	q, certFile, uid, gid := explainFlags(fs)
	if err := parseFlags(fs, args); err != nil {
		return fmt.Errorf("ctl explain: %w", err)
	}
	v := url.Values{}
	for k, s := range map[string]string{"server": q.Server, "sni": q.SNI, "host": q.Host, "method": q.Method, "path": q.Path,
		"src": q.Src, "exe": q.Exe, "uid": *uid, "gid": *gid} {
		if s != "" {
			v.Set(k, s)
		}
	}
	if *certFile != "" {
		data, err := os.ReadFile(*certFile)
		if err != nil {
			return fmt.Errorf("--cert: %w", err)
		}
		v.Set("cert", string(data))
	}
	body, err := control.NewClient(socket).Do(ctx, http.MethodGet, "/policy/explain?"+v.Encode())
	if err != nil {
		return err
	}
	var ex server.Explanation
	if err := json.Unmarshal(body, &ex); err != nil {
		return fmt.Errorf("ctl explain: %w", err)
	}
	_, err = io.WriteString(stdout, ex.String())
	return err
}

// explainQueryOf reads an ExplainQuery from the control socket's query
// parameters.
func explainQueryOf(v url.Values) (*server.ExplainQuery, error) {
	q := &server.ExplainQuery{Server: v.Get("server"), SNI: v.Get("sni"), Host: v.Get("host"), Method: v.Get("method"),
		Path: v.Get("path"), Src: v.Get("src"), Exe: v.Get("exe")}
	if pemText := v.Get("cert"); pemText != "" {
		certs, err := parseCerts([]byte(pemText))
		if err != nil {
			return nil, fmt.Errorf("cert: %w", err)
		}
		q.Certs = certs
	}
	if err := fillExplain(q, "", v.Get("uid"), v.Get("gid")); err != nil {
		return nil, err
	}
	return q, nil
}
