package cmdline

import (
	"flag"
	"fmt"
	"io"
	"strings"
)

// helpWidth is the width help text is wrapped to.
const helpWidth = 80

// PrintFlags writes the flags of fs that keep returns true for (nil: all)
// in the layout both programs use, sorted by name:
//
//	--name VALUE
//	      what it does, wrapped (default 10)
func PrintFlags(w io.Writer, fs *flag.FlagSet, keep func(*flag.Flag) bool) {
	fs.VisitAll(func(f *flag.Flag) {
		if keep != nil && !keep(f) {
			return
		}
		valueName, usage := flag.UnquoteUsage(f)
		head := "  --" + f.Name
		if valueName != "" {
			head += " " + strings.ToUpper(valueName)
		}
		if def := defaultText(f); def != "" {
			usage += " (default " + def + ")"
		}
		fmt.Fprintln(w, head)
		fmt.Fprint(w, Wrap(usage, "        "))
	})
}

// defaultText is the default worth showing, "" for a zero value.
func defaultText(f *flag.Flag) string {
	switch f.DefValue {
	case "", "0", "false", "0s", "[]":
		return ""
	}
	if typeName(f) == "string" {
		return fmt.Sprintf("%q", f.DefValue)
	}
	return f.DefValue
}

// Wrap wraps text to helpWidth columns, each line starting with indent and
// ending with a newline.
func Wrap(text, indent string) string {
	var b strings.Builder
	line := indent
	for _, word := range strings.Fields(text) {
		if len(line) > len(indent) && len(line)+1+len(word) > helpWidth {
			b.WriteString(line + "\n")
			line = indent
		}
		if len(line) > len(indent) {
			line += " "
		}
		line += word
	}
	if len(line) > len(indent) {
		b.WriteString(line + "\n")
	}
	return b.String()
}
