package e2e

func cleanupBinaries() {}
