package policy

// Rules is the policy option: the rule texts as written, parsed when set so
// that a bad rule is an error at load naming the option, the rule and the
// column (the loader adds the file and line).
type Rules struct {
	items []string
	rules []Rule
}

// SetList implements config.ListValue.
func (r *Rules) SetList(items []string) error {
	rules, err := ParseRules(items)
	if err != nil {
		return err
	}
	r.items, r.rules = items, rules
	return nil
}

// List implements config.ListValue.
func (r *Rules) List() []string { return r.items }

// WholeItems implements config.WholeItems: a rule such as
// "allow method:GET,POST" holds commas, so a flag is one whole rule.
func (r *Rules) WholeItems() {}

// Parsed returns the parsed rules.
func (r *Rules) Parsed() []Rule { return r.rules }

// Len is the number of rules.
func (r *Rules) Len() int { return len(r.rules) }

// RuleOptions are the options of server.policy.
type RuleOptions struct {
	Quota  QuotaList `opt:"policy_quota" group:"Policy" help:"per-identity quotas \"KEY conns:N rps:R [burst:B]\", KEY ip, uid, cert (fingerprint) or spiffe; over a limit a request is answered 429 with Retry-After (README: Policy)"`
	Policy Rules     `opt:"policy" group:"Policy" help:"ordered rules \"allow|deny CONDITION...\" over host, sni, path, method, src, cert.* and peer.*; the first match decides, and once any rule is set a request no rule matches is denied (README: Policy)"`
}
