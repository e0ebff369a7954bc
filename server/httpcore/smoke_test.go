package httpcore

import (
	"testing"
	"time"
)

func TestSmoke(t *testing.T) {
	ts := startServer(t, echoHandler(), nil)
	out, closed := ts.exchange(t, "GET /a?b=c HTTP/1.1\r\nHost: x\r\n\r\nPOST /p HTTP/1.1\r\nHost: y\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc", 500*time.Millisecond)
	t.Logf("%s closed=%v", out, closed)
	t.Logf("%+v", ts.core.Stats())
}
