package tlsadapter

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"go.uber.org/zap"
)

func TestZapToSlog(t *testing.T) {
	var buf bytes.Buffer
	l := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	z := newZapLogger(l).Named("obtain").With(zap.String("identifier", "a.example"))
	z.Info("acquiring lock", zap.Int("attempt", 2))
	z.Warn("careful", zap.String("remote", "192.0.2.1:5"))
	z.Error("could not get certificate", zap.Error(errors.New("boom")), zap.Strings("sans", []string{"a", "b"}))

	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("%d lines:\n%s", len(lines), buf.String())
	}
	var recs []map[string]any
	for _, line := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatal(err)
		}
		recs = append(recs, m)
	}
	// certmagic's Info is step-by-step detail: demoted to Debug.
	if recs[0]["level"] != "DEBUG" || recs[0]["msg"] != "acquiring lock" || recs[0]["attempt"] != 2.0 ||
		recs[0]["identifier"] != "a.example" || recs[0]["logger"] != "certmagic.obtain" {
		t.Errorf("info line: %v", recs[0])
	}
	if recs[1]["level"] != "WARN" || recs[1]["remote_addr"] != "192.0.2.1:5" {
		t.Errorf("warn line: %v", recs[1])
	}
	if recs[2]["level"] != "ERROR" || recs[2]["err"] != "boom" {
		t.Errorf("error line: %v", recs[2])
	}

	// Levels the handler drops are never encoded.
	buf.Reset()
	quiet := newZapLogger(slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelWarn})))
	quiet.Info("noise")
	if buf.Len() != 0 {
		t.Errorf("debug-level line written: %s", buf.String())
	}
	if ce := quiet.Check(zap.InfoLevel, "x"); ce != nil {
		t.Error("Check accepted a level the handler drops")
	}
}
