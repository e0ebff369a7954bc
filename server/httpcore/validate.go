package httpcore

// Validate reports every problem with o at once, each naming its option key;
// New runs the same checks.
func (o *Options) Validate() error { return o.validate() }
