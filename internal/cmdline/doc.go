// Package cmdline is what quotaq-worker and quotaq-enqueue share about their
// command lines, so that the two behave as one family: flags written --name,
// help in one layout on stdout, usage errors on one line that name the flag
// and the bad value (and suggest the flag meant when one is mistyped),
// environment errors that name the variable and its value, warnings for
// QUOTAQ_* variables no program reads, and --version from the build
// information.
//
// It builds on the standard flag package. A flag library (ff, cobra) was
// weighed and not taken: ff v3 reads every flag from PREFIX_NAME (the Redis
// flags read REDIS_URL and friends), drops the bad value from its environment
// errors ("parse error"), gives no line for a bad config key and parses YAML
// with gopkg.in/yaml.v2; cobra brings pflag, whose parsing differs from the
// flag package's that both programs' tests and fuzz corpus pin down. What they
// would add here is about a hundred lines.
package cmdline
