package cmdline

import "strings"

// Suggest returns " (did you mean PREFIX+NAME?)" for the name of known
// closest to name, when one is close enough to be a typing mistake, else "".
func Suggest(prefix, name string, known []string) string {
	best, bestD := "", 0
	for _, k := range known {
		d := distance(strings.ToLower(name), strings.ToLower(k))
		if best == "" || d < bestD {
			best, bestD = k, d
		}
	}
	// two edits, or a third of a long name: a slip of the keyboard, not
	// another word
	if best == "" || bestD > max(2, len(best)/3) {
		return ""
	}
	return " (did you mean " + prefix + best + "?)"
}

// distance is the Levenshtein distance between a and b.
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
