// Package composecheck tests the repository's docker-compose.yml and
// Dockerfile without a Docker engine: the compose file is loaded with the
// compose-spec parser (github.com/compose-spec/compose-go/v2), every service
// command is checked against the --help of the binary it names, and the
// Dockerfile's build lines are checked to build main packages that exist.
//
// It is its own module so that compose-go's dependencies stay out of
// quotaq's go.mod; scripts/test.sh runs it (cd internal/composecheck && go
// test ./...).
package composecheck
