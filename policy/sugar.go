package policy

import (
	"fmt"
	"strings"

	"tlsedge/peercred"
)

// The allow-lists older than server.policy (peercreds_allow_*,
// peercreds_mount_allow, ssl_client_allow) are sugar: each compiles to rules
// of the language and is judged by the same evaluation, so they share its
// matching (path normalisation, SPIFFE patterns) and its explanations. They
// form their own list, checked before server.policy: a connection must pass
// both.

// sugarRule builds a rule from conditions already parsed.
func sugarRule(a Action, origin string, conds ...cond) Rule {
	words := []string{a.String()}
	for _, c := range conds {
		words = append(words, c.text)
	}
	if len(conds) == 0 {
		conds = []cond{{kind: condAny, text: "*"}}
		words = append(words, "*")
	}
	return Rule{Text: strings.Join(words, " "), Origin: origin, Action: a, conds: conds}
}

func idCond(kind condKind, name string, id uint32) cond {
	return cond{kind: kind, text: fmt.Sprintf("%s:%d", name, id), ids: []uint32{id}}
}

func nameCond(kind condKind, name, v string) cond {
	return cond{kind: kind, text: name + ":" + v, strs: []string{v}}
}

func pathCond(prefix string) cond {
	return cond{kind: condPath, text: "path:" + prefix, strs: []string{NormalizePath(prefix)}}
}

// peerAllows is the rules of one peer allow-list set: one allow per entry,
// each with the extra conditions (a mount's path).
func (r *rule) peerAllows(extra ...cond) []Rule {
	var out []Rule
	with := func(c cond) []cond { return append(append([]cond{}, extra...), c) }
	for _, id := range r.uids {
		out = append(out, sugarRule(Allow, r.name, with(idCond(condUID, "peer.uid", id))...))
	}
	for _, id := range r.gids {
		out = append(out, sugarRule(Allow, r.name, with(idCond(condGID, "peer.gid", id))...))
	}
	for _, u := range r.users {
		out = append(out, sugarRule(Allow, r.name, with(nameCond(condUser, "peer.user", u))...))
	}
	for _, g := range r.groups {
		out = append(out, sugarRule(Allow, r.name, with(nameCond(condGroup, "peer.group", g))...))
	}
	return out
}

// acceptRules is peercreds_allow_* as rules: one allow per entry; anyone
// else meets the default deny. Nil when the lists are empty.
func (p *PeerPolicy) acceptRules() []Rule {
	if p.accept.empty() {
		return nil
	}
	return p.accept.peerAllows()
}

// mountRules is peercreds_mount_allow as rules: longest prefix first, each
// prefix's allows then a deny on the prefix, and "allow *" last.
func (p *PeerPolicy) mountRules() []Rule {
	if len(p.mounts) == 0 {
		return nil
	}
	var out []Rule
	for _, m := range p.mounts {
		out = append(out, m.peerAllows(pathCond(m.prefix))...)
		out = append(out, sugarRule(Deny, m.name, pathCond(m.prefix)))
	}
	return append(out, sugarRule(Allow, "peercreds_mount_allow"))
}

// Rules returns the rules the allow-lists stand for: the accept-time ones,
// then the per-path ones, as `tlsedge policy explain` shows them.
func (p *PeerPolicy) Rules() (accept, mounts []Rule) {
	if p == nil {
		return nil, nil
	}
	return p.acceptPol.Rules(), p.mountPol.Rules()
}

func (p *PeerPolicy) compileRules(res *peercred.Resolver) {
	p.acceptPol = NewPolicy(p.acceptRules(), res)
	p.mountPol = NewPolicy(p.mountRules(), res)
}

// deniedBy judges facts with pol and names the allow-list that refused.
func deniedBy(pol *Policy, f *Facts, fallback string) (string, bool) {
	d := pol.Decide(f, StageRequest)
	if d.Action == Allow {
		return "", false
	}
	if d.Rule > 0 {
		return pol.rules[d.Rule-1].Origin, true
	}
	return fallback, true
}
