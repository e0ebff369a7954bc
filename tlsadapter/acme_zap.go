package tlsadapter

import (
	"context"
	"log/slog"
	"maps"
	"slices"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// zapToSlog is a zapcore.Core writing to a slog.Handler, so certmagic's zap
// logging ends up in tlsedge's one log stream with tlsedge's keys. zap's own
// slog package (zap/exp/zapslog) goes the other way (slog front, zap back),
// hence this small bridge.
//
// certmagic logs every step of its work (locks, orders, challenges) at Info.
// Those lines are demoted to Debug: the adapter logs the events an operator
// acts on (obtained, renewed, failed, fallback served) at Info itself, and
// certmagic's warnings and errors keep their level.
type zapToSlog struct {
	h      slog.Handler
	name   string
	fields []zapcore.Field
}

// newZapLogger returns a zap logger writing to l's handler.
func newZapLogger(l *slog.Logger) *zap.Logger {
	return zap.New(&zapToSlog{h: l.Handler()})
}

func slogLevel(l zapcore.Level) slog.Level {
	switch {
	case l <= zapcore.InfoLevel:
		return slog.LevelDebug
	case l == zapcore.WarnLevel:
		return slog.LevelWarn
	default:
		return slog.LevelError
	}
}

func (c *zapToSlog) Enabled(l zapcore.Level) bool {
	return c.h.Enabled(context.Background(), slogLevel(l))
}

func (c *zapToSlog) With(fields []zapcore.Field) zapcore.Core {
	n := *c
	n.fields = append(append([]zapcore.Field(nil), c.fields...), fields...)
	return &n
}

func (c *zapToSlog) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c *zapToSlog) Write(e zapcore.Entry, fields []zapcore.Field) error {
	enc := zapcore.NewMapObjectEncoder()
	for _, f := range c.fields {
		f.AddTo(enc)
	}
	for _, f := range fields {
		f.AddTo(enc)
	}
	t := e.Time
	if t.IsZero() {
		t = time.Now()
	}
	r := slog.NewRecord(t, slogLevel(e.Level), e.Message, 0)
	name := e.LoggerName
	if name == "" {
		name = c.name
	}
	if name != "" {
		r.AddAttrs(slog.String("logger", "certmagic."+name))
	} else {
		r.AddAttrs(slog.String("logger", "certmagic"))
	}
	// Map order is random; sorted keys keep lines diffable.
	for _, k := range slices.Sorted(maps.Keys(enc.Fields)) {
		r.AddAttrs(slog.Any(renameZapKey(k), enc.Fields[k]))
	}
	return c.h.Handle(context.Background(), r)
}

func (c *zapToSlog) Sync() error { return nil }

// renameZapKey maps certmagic's field names onto tlsedge's shared keys.
func renameZapKey(k string) string {
	switch k {
	case "remote", "remote_ip":
		return "remote_addr"
	case "error":
		return "err"
	}
	return k
}
