package cmdline

import (
	"errors"
	"flag"
	"fmt"
	"regexp"
	"strings"
)

// The error texts of the flag package (Go 1.21 and later), rewritten by
// Explain.
var (
	undefinedFlag = regexp.MustCompile(`^flag provided but not defined: -+(.*)$`)
	invalidValue  = regexp.MustCompile(`(?s)^invalid (?:boolean )?value (".*") for (?:flag )?-+([^:]+): (.*)$`)
	needsArgument = regexp.MustCompile(`^flag needs an argument: -+(.*)$`)
	badSyntax     = regexp.MustCompile(`^bad flag syntax: (.*)$`)
)

// Explain rewrites an error of fs.Parse into one line that names the flag as
// --name, the value given and what was expected: "--concurrency "abc": not a
// whole number", "unknown flag --concurency (did you mean --concurrency?)".
// flag.ErrHelp and errors not from the flag package are returned as they are.
func Explain(fs *flag.FlagSet, err error) error {
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return err
	}
	msg := err.Error()
	if m := undefinedFlag.FindStringSubmatch(msg); m != nil {
		return fmt.Errorf("unknown flag --%s%s", m[1], Suggest("--", m[1], flagNames(fs)))
	}
	if m := invalidValue.FindStringSubmatch(msg); m != nil {
		f := fs.Lookup(m[2])
		if f == nil {
			return err
		}
		return fmt.Errorf("--%s %s: %s", f.Name, m[1], reason(f, errors.New(m[3])))
	}
	if m := needsArgument.FindStringSubmatch(msg); m != nil {
		return fmt.Errorf("--%s needs a value (--%s=VALUE or --%s VALUE)", m[1], m[1], m[1])
	}
	if m := badSyntax.FindStringSubmatch(msg); m != nil {
		return fmt.Errorf("bad flag syntax %q: write flags as --name or --name=value", m[1])
	}
	return err
}

// Set sets the flag name of fs to value, as an environment variable or a
// config file does. Its error says what was expected, without the flag's
// name or the value, which the caller names in its own terms
// (QUOTAQ_CONCURRENCY="abc": not a whole number).
func Set(fs *flag.FlagSet, name, value string) error {
	f := fs.Lookup(name)
	if f == nil {
		return fmt.Errorf("no flag --%s", name)
	}
	if err := fs.Set(name, value); err != nil {
		return errors.New(reason(f, err))
	}
	return nil
}

// reason turns the flag package's terse errors for its own value types
// ("parse error", "value out of range") into what was expected. The errors
// of other values (flag.Value implementations of the programs) already say
// it and are kept.
func reason(f *flag.Flag, err error) string {
	msg := err.Error()
	if msg != "parse error" && msg != "value out of range" {
		return msg
	}
	kind := Kind(f)
	switch {
	case kind == "true or false":
		return "give true or false"
	case msg == "value out of range":
		return "out of range for " + kind
	}
	return "not " + kind
}

// Kind names what a flag takes, for errors: "a whole number", "a number",
// "a duration such as 1.5s, 2m or 1h", "true or false".
func Kind(f *flag.Flag) string {
	if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
		return "true or false"
	}
	switch typeName(f) {
	case "int", "uint":
		return "a whole number"
	case "float":
		return "a number"
	case "duration":
		return "a duration such as 1.5s, 2m or 1h"
	}
	return "a valid value"
}

// typeName is the flag package's name for f's type ("int", "duration", ...),
// whatever the usage text says.
func typeName(f *flag.Flag) string {
	name, _ := flag.UnquoteUsage(&flag.Flag{Name: f.Name, Value: f.Value})
	return name
}

func flagNames(fs *flag.FlagSet) []string {
	var names []string
	fs.VisitAll(func(f *flag.Flag) { names = append(names, f.Name) })
	return names
}

// Given returns the names of the flags set on fs so far.
func Given(fs *flag.FlagSet) map[string]bool {
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	return given
}

// OneLine joins the lines of s into one, keeping the spaces within a line
// (a quoted value "  " stays as given).
func OneLine(s string) string {
	var parts []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			parts = append(parts, l)
		}
	}
	return strings.Join(parts, " ")
}
