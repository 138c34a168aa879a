// Package e2e runs real `mastership` processes on localhost and checks what
// a user would see: the binary is built once per test run, every process gets
// its own address, and every process a test starts is killed when it ends.
//
// Run with `go test ./e2e/...`. Tests that need root (network namespaces and
// iptables) skip themselves when not run as root.
//
// # Testing layers
//
// The project tests in four layers, this package being the last:
//
//  1. table tests of the pure decisions (detection, retention, elections,
//     config validation);
//  2. in-process clusters (agent/agenttest) over fault-injecting transports;
//  3. seeded fault schedules over the whole-group simulator (recover/sim)
//     and over the in-process cluster, with the invariants of package
//     recover and porcupine;
//  4. real processes: unprivileged scenarios through the agents' fault
//     control, and, as root, each process on its own test host (a network
//     namespace on a bridge) with iptables cuts.
package e2e
