package appopt

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// LB is a load-balancing method of proxy_lb.
type LB uint8

// The methods proxy_lb names.
const (
	RoundRobin LB = iota
	LeastConn
	RandomTwo
	IPHash
	HeaderHash
	Cookie
)

// ParseLB parses proxy_lb: a method, and for header: and cookie: the field
// or cookie name. Empty is round_robin.
func ParseLB(s string) (LB, string, error) {
	switch s {
	case "", "round_robin":
		return RoundRobin, "", nil
	case "least_conn":
		return LeastConn, "", nil
	case "random_two":
		return RandomTwo, "", nil
	case "ip_hash":
		return IPHash, "", nil
	}
	if name, ok := strings.CutPrefix(s, "header:"); ok {
		if !isToken(name) {
			return 0, "", fmt.Errorf("header:%q: want a field name after header:", name)
		}
		return HeaderHash, name, nil
	}
	if name, ok := strings.CutPrefix(s, "cookie:"); ok {
		if !isToken(name) {
			return 0, "", fmt.Errorf("cookie:%q: want a cookie name after cookie:", name)
		}
		return Cookie, name, nil
	}
	return 0, "", fmt.Errorf("%q is not round_robin, least_conn, random_two, ip_hash, header:NAME or cookie:NAME", s)
}

// StatusSet is the statuses a passing health check may answer, by code.
type StatusSet [6]uint128

type uint128 [2]uint64

// Has reports whether code is in the set.
func (s *StatusSet) Has(code int) bool {
	if code < 100 || code > 599 {
		return false
	}
	c, n := code/100, code%100
	return s[c][n/64]&(1<<(n%64)) != 0
}

func (s *StatusSet) add(code int) {
	c, n := code/100, code%100
	s[c][n/64] |= 1 << (n % 64)
}

// ParseStatusSet parses proxy_health_status: codes (200) and classes (2xx)
// separated by spaces or commas. Empty means 2xx.
func ParseStatusSet(v string) (*StatusSet, error) {
	var s StatusSet
	items := strings.FieldsFunc(v, func(r rune) bool { return r == ' ' || r == ',' || r == '\t' })
	if len(items) == 0 {
		items = []string{"2xx"}
	}
	for _, it := range items {
		if len(it) == 3 && it[0] >= '1' && it[0] <= '5' && strings.EqualFold(it[1:], "xx") {
			for n := range 100 {
				s.add(int(it[0]-'0')*100 + n)
			}
			continue
		}
		n, err := strconv.Atoi(it)
		if err != nil || n < 100 || n > 599 || len(it) != 3 {
			return nil, errors.New(strconv.Quote(it) + " is not a status (200) or a class (2xx)")
		}
		s.add(n)
	}
	return &s, nil
}

func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= 32 || c >= 127 || strings.IndexByte(`()<>@,;:\"/[]?={}`, c) >= 0 {
			return false
		}
	}
	return true
}

// validRequestTarget reports whether p can stand in a request line: no
// spaces, controls or bytes above ASCII.
func validRequestTarget(p string) bool {
	for i := 0; i < len(p); i++ {
		if c := p[i]; c <= ' ' || c >= 0x7f {
			return false
		}
	}
	return true
}
