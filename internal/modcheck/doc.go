// Package modcheck holds no code, only a test: each go.mod in the
// repository asks for the oldest Go its dependencies allow, so that a program
// importing quotaq is not forced onto a newer Go than the libraries under it
// already require.
package modcheck
