package main

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
)

// keyColumns are the columns, after the first, that name a row rather than
// measure it (limiterbench's "callers", for one).
var keyColumns = []string{"callers", "stored policies", "tenants decided over"}

// table is one Markdown table of a run's output.
type table struct {
	title string   // the heading above it, up to its first " (" or ":"
	cols  []string // header cells
	keys  int      // leading columns that name a row
	rows  [][]string
}

// id names a table across runs and versions.
func (t table) id() string { return t.title + "\x00" + strings.Join(t.cols, "\x00") }

// parseTables reads the Markdown tables in a command's output.
func parseTables(out string) []table {
	var (
		ts    []table
		title string
		cur   *table
	)
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		if h, ok := strings.CutPrefix(line, "#"); ok {
			title = strings.TrimSpace(strings.TrimLeft(h, "#"))
			if i := strings.IndexAny(title, "(:"); i >= 0 {
				title = strings.TrimSpace(title[:i])
			}
			cur = nil
			continue
		}
		if !strings.HasPrefix(line, "|") {
			cur = nil
			continue
		}
		cells := splitRow(line)
		switch {
		case cur == nil:
			ts = append(ts, table{title: title, cols: cells, keys: 1})
			cur = &ts[len(ts)-1]
			for cur.keys < len(cells) && slices.Contains(keyColumns, cells[cur.keys]) {
				cur.keys++
			}
		case strings.Trim(line, "|-: ") == "": // the alignment row
		case len(cells) == len(cur.cols):
			cur.rows = append(cur.rows, cells)
		}
	}
	return ts
}

func splitRow(line string) []string {
	cells := strings.Split(strings.Trim(line, "|"), "|")
	for i, c := range cells {
		cells[i] = strings.TrimSpace(c)
	}
	return cells
}

// number reads a cell's leading number: "25.4", "<1" (as 1), "152 (one
// key)"; "-" and words are not numbers.
func number(cell string) (float64, bool) {
	f, _, _ := strings.Cut(strings.TrimPrefix(cell, "<"), " ")
	v, err := strconv.ParseFloat(f, 64)
	return v, err == nil && !math.IsNaN(v) && !math.IsInf(v, 0)
}

// resolution is the place of a number cell's last digit: 0.01 for "0.00",
// 1 for "152", 1e-06 for "0.000245", 1e-07 for "2.45e-05". Two versions
// may print a figure to different digits; a difference finer than the
// coarser of them cannot be told.
func resolution(cell string) float64 {
	f, _, _ := strings.Cut(strings.TrimPrefix(cell, "<"), " ")
	mant, exp, _ := strings.Cut(strings.ToLower(f), "e")
	e, _ := strconv.Atoi(exp)
	if _, frac, ok := strings.Cut(mant, "."); ok {
		e -= len(frac)
	}
	return math.Pow(10, float64(e))
}

// series is one table's figures over the runs of one side.
type series struct {
	table
	order []string               // row names, first seen first
	vals  map[string][][]float64 // row name → column → one value a run (NaN: not a number)
	res   map[string][]float64   // row name → column → the coarsest resolution printed
	names map[string][]string    // row name → its key cells
}

// side collects one version's runs.
type side struct {
	order []string // table ids, first seen first
	by    map[string]*series
}

func newSide() *side { return &side{by: map[string]*series{}} }

// add merges one run's output, renaming rows (by their first cell) as
// rename says. Output without a table is an error.
func (s *side) add(out string, rename map[string]string) error {
	ts := parseTables(out)
	if len(ts) == 0 {
		return fmt.Errorf("no Markdown table in its output: %q", out)
	}
	for _, t := range ts {
		ser, ok := s.by[t.id()]
		if !ok {
			ser = &series{table: table{title: t.title, cols: t.cols, keys: t.keys},
				vals: map[string][][]float64{}, res: map[string][]float64{}, names: map[string][]string{}}
			s.by[t.id()] = ser
			s.order = append(s.order, t.id())
		}
		for _, r := range t.rows {
			if n, ok := rename[r[0]]; ok {
				r[0] = n
			}
			name := strings.Join(r[:t.keys], " | ")
			if _, ok := ser.vals[name]; !ok {
				ser.order = append(ser.order, name)
				ser.vals[name] = make([][]float64, len(t.cols))
				ser.res[name] = make([]float64, len(t.cols))
				ser.names[name] = r[:t.keys]
			}
			for c := t.keys; c < len(r); c++ {
				v, ok := number(r[c])
				if !ok {
					v = math.NaN()
				} else {
					ser.res[name][c] = max(ser.res[name][c], resolution(r[c]))
				}
				ser.vals[name][c] = append(ser.vals[name][c], v)
			}
		}
	}
	return nil
}

// stat is a cell's figures over the runs.
type stat struct{ mean, min, max float64 }

func (s stat) spread() float64 { return s.max - s.min }

// summarise returns the mean, min and max of vs, or false when a run
// had no number there.
func summarise(vs []float64) (stat, bool) {
	if len(vs) == 0 {
		return stat{}, false
	}
	st := stat{min: math.Inf(1), max: math.Inf(-1)}
	for _, v := range vs {
		if math.IsNaN(v) {
			return stat{}, false
		}
		st.mean += v / float64(len(vs))
		st.min, st.max = min(st.min, v), max(st.max, v)
	}
	return st, true
}

// unranked are figures that are neither better higher nor lower: what the
// limit lets through.
var unranked = []string{"admitted/s"}

// higherIsBetter reports whether a column is a rate (decisions/s).
func higherIsBetter(col string) bool { return strings.HasSuffix(col, "/s") }

// worse reports whether after is worse than before by more than the larger
// of their spreads, and by more than res, the coarser of the two sides'
// resolutions.
func worse(col string, before, after stat, res float64) bool {
	if slices.Contains(unranked, col) {
		return false
	}
	d := after.mean - before.mean
	if higherIsBetter(col) {
		d = -d
	}
	return d > max(before.spread(), after.spread(), res)
}

// compare writes one table per table found on either side: each row and
// column both sides have, with the mean and spread of each side and the
// ratio, then the rows only one side has. It returns the cells marked
// worse. columns, when given, limits the columns shown.
func compare(w io.Writer, before, after *side, columns []string) (cells, marked int) {
	ids := slices.Clone(before.order)
	for _, id := range after.order {
		if !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	}
	for _, id := range ids {
		b, a := before.by[id], after.by[id]
		t := cmpTable(a, b)
		title := t.title
		if title == "" {
			title = strings.Join(t.cols, ", ")
		}
		fmt.Fprintf(w, "### %s\n\n", title)
		if b == nil || a == nil {
			fmt.Fprintf(w, "Only %s has this table.\n\n", map[bool]string{true: "before", false: "after"}[a == nil])
			continue
		}
		head := append(slices.Clone(b.cols[:b.keys]), "figure", "before: mean (min–max)", "after: mean (min–max)", "after/before", "")
		fmt.Fprintf(w, "| %s |\n|%s\n", strings.Join(head, " | "), strings.Repeat("---|", b.keys+1)+"---:|---:|---:|---|")
		for _, name := range b.order {
			av, ok := a.vals[name]
			if !ok {
				continue
			}
			for c := b.keys; c < len(b.cols); c++ {
				col := b.cols[c]
				ac := slices.Index(a.cols, col)
				if ac < 0 || (len(columns) > 0 && !slices.Contains(columns, col)) {
					continue
				}
				bs, ok1 := summarise(b.vals[name][c])
				as, ok2 := summarise(av[ac])
				if !ok1 || !ok2 {
					continue
				}
				ratio, mark := "-", ""
				if bs.mean != 0 {
					ratio = strconv.FormatFloat(as.mean/bs.mean, 'f', 2, 64)
				}
				cells++
				if worse(col, bs, as, max(b.res[name][c], a.res[name][ac])) {
					mark = "**worse**"
					marked++
				}
				fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s |\n", strings.Join(b.names[name], " | "), col,
					statString(bs), statString(as), ratio, mark)
			}
		}
		fmt.Fprintln(w)
		only(w, "before", b, a)
		only(w, "after", a, b)
	}
	return cells, marked
}

// cmpTable returns whichever of a and b is there.
func cmpTable(a, b *series) table {
	if b != nil {
		return b.table
	}
	return a.table
}

// only lists the rows of s that other does not have.
func only(w io.Writer, name string, s, other *series) {
	var rows []string
	for _, r := range s.order {
		if _, ok := other.vals[r]; !ok {
			rows = append(rows, "`"+r+"`")
		}
	}
	if len(rows) > 0 {
		fmt.Fprintf(w, "Rows only %s has: %s\n\n", name, strings.Join(rows, "; "))
	}
}

func statString(s stat) string {
	if s.min == s.max {
		return format(s.mean)
	}
	return format(s.mean) + " (" + format(s.min) + "–" + format(s.max) + ")"
}

// format shows three significant figures, at least none after the point.
func format(v float64) string {
	switch a := math.Abs(v); {
	case a >= 100 || a == 0:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case a >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	case a >= 0.01:
		return strconv.FormatFloat(v, 'f', 2, 64)
	default:
		return strconv.FormatFloat(v, 'g', 3, 64)
	}
}
