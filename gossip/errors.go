package gossip

import "errors"

// Sentinel errors; every error the package returns wraps one of them with
// the action that failed.
var (
	// ErrConfig is wrapped by Config.Validate, with the field and value.
	ErrConfig = errors.New("gossip: invalid config")
	// ErrBadMeta is wrapped when node metadata does not validate, does not
	// fit memberlist.MetaMaxSize, or does not match its node name.
	ErrBadMeta = errors.New("gossip: bad node metadata")
	// ErrBadClaim is wrapped when a claim does not validate or is not this
	// agent's own.
	ErrBadClaim = errors.New("gossip: bad claim")
	// ErrStaleClaim is returned by Claim for an epoch older than one this
	// agent already claimed or withdrew.
	ErrStaleClaim = errors.New("gossip: stale claim")
	// ErrDuplicateID is returned by Join when another live member already
	// uses this agent's group and ID (node name) at another address. The
	// Gossip is shut down: the agent must not run with a taken ID.
	ErrDuplicateID = errors.New("gossip: agent ID already in use")
	// ErrJoin is wrapped when no join address could be reached.
	ErrJoin = errors.New("gossip: join failed")
	// ErrShutdown is returned by calls after Shutdown.
	ErrShutdown = errors.New("gossip: shut down")
	// ErrNoEncryption is returned by the keyring operations of an agent
	// whose gossip is not encrypted: rotation starts from a key.
	ErrNoEncryption = errors.New("gossip: encryption is off")
)
