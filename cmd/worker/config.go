package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/quotaq/quotaq/internal/cmdline"
)

// setting is one key of a config file.
type setting struct {
	key, value string
	line       int
}

// readConfig reads a config file: a YAML mapping of flag names to values.
// A value is a scalar, a list (joined with commas: http-allow) or a map of
// scalars (written name=value, joined with commas: queues).
func readConfig(path string) ([]setting, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, err
	}
	if len(doc.Content) == 0 {
		return nil, nil // an empty file sets nothing
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("line %d: give settings as key: value lines (concurrency: 20)", root.Line)
	}
	var out []setting
	seen := map[string]int{}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			return nil, fmt.Errorf("line %d: a key must be a flag's name", k.Line)
		}
		if first, dup := seen[k.Value]; dup {
			return nil, fmt.Errorf("line %d: %s is set again (first on line %d)", k.Line, k.Value, first)
		}
		seen[k.Value] = k.Line
		value, err := nodeValue(v)
		if err != nil {
			return nil, fmt.Errorf("line %d: %s: %v", v.Line, k.Value, err)
		}
		out = append(out, setting{key: k.Value, value: value, line: k.Line})
	}
	return out, nil
}

func nodeValue(n *yaml.Node) (string, error) {
	switch n.Kind {
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return "", nil
		}
		return n.Value, nil
	case yaml.SequenceNode:
		var parts []string
		for _, c := range n.Content {
			if c.Kind != yaml.ScalarNode {
				return "", errors.New("give a list of plain values")
			}
			parts = append(parts, c.Value)
		}
		return strings.Join(parts, ","), nil
	case yaml.MappingNode:
		var parts []string
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Kind != yaml.ScalarNode || v.Kind != yaml.ScalarNode {
				return "", errors.New("give a map of plain values (critical: 6)")
			}
			parts = append(parts, k.Value+"="+v.Value)
		}
		return strings.Join(parts, ","), nil
	}
	return "", errors.New("give a value, a list or a map")
}

// applyConfig sets the flags the config file names, those apply says may
// be set (not given on the command line, their variable not set). Its
// errors name the file, the line and the key.
func (o *options) applyConfig(fs *flag.FlagSet, apply func(*flag.Flag) bool) error {
	settings, err := readConfig(o.config)
	if err != nil {
		return fmt.Errorf("--config %s: %v", o.config, err)
	}
	var names []string
	fs.VisitAll(func(f *flag.Flag) {
		if !notInFile[f.Name] {
			names = append(names, f.Name)
		}
	})
	for _, s := range settings {
		f := fs.Lookup(s.key)
		if f == nil || notInFile[s.key] {
			return fmt.Errorf("--config %s: line %d: unknown key %q%s; the keys are the flags' names (see --help)",
				o.config, s.line, s.key, cmdline.Suggest("", s.key, names))
		}
		if !apply(f) {
			continue
		}
		if err := cmdline.Set(fs, s.key, s.value); err != nil {
			return fmt.Errorf("--config %s: line %d: %s %q: %v", o.config, s.line, s.key, s.value, err)
		}
	}
	return nil
}
