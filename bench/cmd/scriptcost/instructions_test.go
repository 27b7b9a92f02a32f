package main

import (
	"os"
	"path/filepath"
	"testing"
)

// lastDump reads the instructions of the newest callgrind dump: numbered
// 1, 2, ... 10 (not in the order of their names), with either the summary
// or the totals line.
func TestLastDumpReadsTheNewest(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for name, body := range map[string]string{
		"callgrind.out.2":  "events: Ir\nsummary: 200\n",
		"callgrind.out.10": "events: Ir\nfl= x\n1 5\ntotals: 1000 \n",
		"callgrind.out.9":  "events: Ir\nsummary: 900\n",
		"callgrind.out":    "events: Ir\nsummary: 1\n", // written at exit, not a dump
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := lastDump(dir)
	if err != nil || got != 1000 {
		t.Errorf("lastDump = %d, %v; want 1000 (callgrind.out.10)", got, err)
	}
	if _, err := lastDump(t.TempDir()); err == nil {
		t.Error("lastDump of an empty directory: no error")
	}
}
