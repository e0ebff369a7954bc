package policy

import (
	"strings"
	"testing"
	"time"
)

func TestParseQuota(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want string // error substring; "" for ok
	}{
		{"ip conns:10 rps:5", ""},
		{"spiffe rps:0.5 burst:3", ""},
		{"uid conns:2", ""},
		{"cert rps:100", ""},
		{"ip", "want KEY"},
		{"host rps:1", `key "host"`},
		{"ip rps:0", "rate above 0"},
		{"ip rps:NaN", "rate above 0"},
		{"ip conns:-1", "count"},
		{"ip burst:3", "no limit"},
		{"ip conns:1 burst:3", "burst needs rps"},
		{"ip max:3", `"max:3"`},
	} {
		_, err := ParseQuota(tt.in)
		if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("%q: %v, want %q", tt.in, err, tt.want)
		}
	}
	var l QuotaList
	if err := l.SetList([]string{"ip rps:1", "ip conns:1"}); err == nil || !strings.Contains(err.Error(), "one entry per key") {
		t.Errorf("two quotas by ip: %v", err)
	}
}

// TestLimiterTripsAndRecovers: a rate trips at its burst and recovers as
// tokens come back; connection slots trip at the limit and come back on
// release; keys are counted apart.
func TestLimiterTripsAndRecovers(t *testing.T) {
	q1, _ := ParseQuota("ip rps:2 burst:2")
	q2, _ := ParseQuota("uid conns:2")
	l := NewLimiter([]Quota{q1, q2})
	now := time.Unix(1000, 0)
	l.now = func() time.Time { return now }
	a := [4]string{QuotaIP: "10.0.0.1"}
	b := [4]string{QuotaIP: "10.0.0.2"}
	for i := range 2 {
		if err := l.Request(a); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
	}
	err := l.Request(a)
	qe, ok := err.(*QuotaError)
	if !ok || qe.RetryAfter != 500*time.Millisecond || RetryAfterSeconds(qe.RetryAfter) != "1" {
		t.Fatalf("third request: %v", err)
	}
	if err := l.Request(b); err != nil {
		t.Fatalf("another key: %v", err)
	}
	now = now.Add(500 * time.Millisecond)
	if err := l.Request(a); err != nil {
		t.Fatalf("after the retry time: %v", err)
	}
	u := [4]string{QuotaUID: "65534"}
	r1, err1 := l.Acquire(u, StageAccept)
	_, err2 := l.Acquire(u, StageAccept)
	if _, err3 := l.Acquire(u, StageAccept); err1 != nil || err2 != nil || err3 == nil {
		t.Fatalf("conns: %v %v %v", err1, err2, err3)
	}
	r1()
	r1() // twice is once
	if _, err := l.Acquire(u, StageAccept); err != nil {
		t.Fatalf("after a release: %v", err)
	}
	if _, err := l.Acquire(u, StageAccept); err == nil {
		t.Fatal("a double release gave back two slots")
	}
	c := l.Counts()
	if c[0].Requests != 1 || c[1].Connections != 2 {
		t.Fatalf("counts = %+v", c)
	}
}
