package e2e

import (
	"strings"
	"testing"
)

// The command-line client stops at a definite answer: a group the naming
// node does not know for a second is said then (not retried to the
// deadline, whose message would be another); a naming node that does not answer is
// explained in one line with what to check.
func TestKVClientErrors(t *testing.T) {
	addr := freeAddr(t, "127.0.142.2")
	startNaming(t, addr, t.TempDir())
	_, errOut, code := run(t, "kv", "get", "-naming", addr, "-group", "nosuch", "-timeout", "30s", "k")
	if code != 1 || !strings.Contains(errOut, `group unknown to the naming node: "nosuch"`) || strings.Contains(errOut, "deadline") {
		t.Errorf("kv get of an unknown group: exit %d, %q", code, errOut)
	}
	dead := freeAddr(t, "127.0.142.3")
	_, errOut, code = run(t, "kv", "put", "-naming", dead, "-group", "g", "-timeout", "1s", "k", "v")
	want := "naming node " + dead + " unreachable (connect: connection refused): check that it runs and that -naming (or MASTERSHIP_NAMING) names it, or give -agent"
	if code != 1 || !strings.Contains(errOut, want) || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
		t.Errorf("kv put with the naming node down: exit %d, %q; want one line with %q", code, errOut, want)
	}
}
