package throttle

// WithGeneralPath makes a Limiter decide every call with decide.lua, as it
// does for several ids, instead of lean.lua: tests compare the two.
func WithGeneralPath() Option { return func(l *Limiter) { l.general = true } }
