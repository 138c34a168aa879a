package agent

import (
	"context"

	"github.com/mastership/mastership/gossip"
)

// MetJoinForTest is metJoin over join resolved as Start resolves it.
func MetJoinForTest(members []gossip.Member, join []string) bool {
	return metJoin(members, resolveJoin(context.Background(), join))
}
