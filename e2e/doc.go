// Package e2e runs real `mastership` processes on localhost and checks what
// a user would see: the binary is built once per test run, every process gets
// its own address, and every process a test starts is killed when it ends.
//
// Run with `go test ./e2e/...`. Tests that need root (network namespaces and
// iptables) skip themselves when not run as root.
package e2e
