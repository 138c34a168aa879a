package e2e

import (
	"strings"
	"testing"
	"time"
)

// A command pointed at the wrong kind of port says what to check: the
// agent's gossip port for its API, an agent's API for the naming node,
// the naming node for an agent's API.
func TestWrongPortHints(t *testing.T) {
	g := startGroupAt(t, 144, 1, "available", false, "local")
	a := g.agents[0]
	waitFor(t, 20*time.Second, "a registered master", func() bool { return cliRegistered(t, g.naming, "g") != 0 })
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"members", "-agent", a.bind}, "it speaks no HTTP: the agent's gossip port? its API is another, -api"},
		{[]string{"status", "-naming", a.api}, "it answers HTTP, but not as a naming node (an agent's API address? give the naming node's, -naming)"},
		{[]string{"status", "-naming", a.bind}, "it speaks no HTTP: an agent's gossip port? give the naming node's address"},
		{[]string{"info", "-agent", g.naming}, "is it an agent's API address? a naming node answers so; give the agent's, -agent"},
	} {
		_, errOut, code := run(t, c.args...)
		if code != 1 || !strings.Contains(errOut, c.want) {
			t.Errorf("%v: exit %d, %q; want exit 1 and %q", c.args, code, errOut, c.want)
		}
	}
}
