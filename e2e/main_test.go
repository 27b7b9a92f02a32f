package e2e

import (
	"flag"
	"os"
	"testing"

	"github.com/quotaq/quotaq/internal/redistest"
)

var long = flag.Bool("e2e.long", os.Getenv("QUOTAQ_E2E_LONG") != "", "run the long variants (100,000-task load test); also QUOTAQ_E2E_LONG=1")

func TestMain(m *testing.M) {
	flag.Parse()
	code := redistest.Main(m)
	cleanupBinaries()
	os.Exit(code)
}
