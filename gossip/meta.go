package gossip

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/hashicorp/memberlist"

	"github.com/mastership/mastership/naming/api"
)

// Meta is what an agent tells every other member about itself through
// memberlist's node metadata. It is msgpack-encoded with short keys and must
// fit memberlist.MetaMaxSize (512 bytes): with the longest group name (63
// bytes) and the longest address (api.MaxAddrLen) it does, see
// TestMetaFitsMemberlistLimit.
type Meta struct {
	// Group is the agent's group; it must equal Config.Group.
	Group string `json:"group" codec:"g"`
	// ID is the agent's ID; it must equal Config.ID.
	ID uint64 `json:"id" codec:"i"`
	// Priority orders the agents of a group for elections and retention.
	Priority int `json:"priority" codec:"p"`
	// Role is what the agent does now (backup, master, ...).
	Role api.Role `json:"role" codec:"r"`
	// Epoch is the newest epoch the agent knows for its group.
	Epoch api.Epoch `json:"epoch" codec:"e"`
	// Master is the ID of the master the agent follows (its own ID when it
	// is master, 0 when it follows none).
	Master uint64 `json:"master" codec:"m"`
	// API is the agent's API address (host:port), empty if it serves none.
	API string `json:"api" codec:"a"`
	// Mode is the group's consistency mode ("strict" or "available"); empty
	// means available.
	Mode string `json:"mode" codec:"o"`
	// Service is the managed service's health as the agent's checks see
	// it: "healthy", "unhealthy", or empty when the agent runs no check.
	// An unhealthy agent does not campaign and takes no handover.
	Service string `json:"service,omitempty" codec:"h,omitempty"`
}

// Service health values of Meta.Service.
const (
	ServiceHealthy   = "healthy"
	ServiceUnhealthy = "unhealthy"
)

// metaWire is Meta as carried on the wire: Leaving tells the others that the
// agent is leaving on purpose, so that its departure is "left" and not
// "dead" (memberlist does not tell its delegates which of the two it was).
type metaWire struct {
	M       Meta   `codec:"m"`
	Leaving bool   `codec:"l"`
	Boot    uint64 `codec:"b"` // random per Gossip instance, ties leave intents to one run
}

// NodeName is the memberlist node name of an agent: "group/ID". Group names
// cannot contain '/', so the name is unique per (group, ID) and parses back.
func NodeName(group string, id uint64) string {
	return group + "/" + strconv.FormatUint(id, 10)
}

// ParseNodeName is the inverse of NodeName.
func ParseNodeName(name string) (group string, id uint64, err error) {
	i := strings.LastIndexByte(name, '/')
	if i < 0 {
		return "", 0, fmt.Errorf("%w node name %q: want group/ID", ErrBadMeta, name)
	}
	id, err = strconv.ParseUint(name[i+1:], 10, 64)
	if err != nil {
		return "", 0, fmt.Errorf("%w node name %q: ID: %v", ErrBadMeta, name, err)
	}
	return name[:i], id, nil
}

// Validate checks every field of m that the others rely on.
func (m Meta) Validate() error {
	if err := api.ValidateGroup(m.Group); err != nil {
		return fmt.Errorf("%w: %v", ErrBadMeta, err)
	}
	if err := api.ValidateID(m.ID); err != nil {
		return fmt.Errorf("%w: %v", ErrBadMeta, err)
	}
	if m.Role > api.RoleSyncing {
		return fmt.Errorf("%w: role %d is unknown", ErrBadMeta, m.Role)
	}
	if m.API != "" {
		if err := api.ValidateAddr("api", m.API); err != nil {
			return fmt.Errorf("%w: %v", ErrBadMeta, err)
		}
	}
	if m.Mode != "" {
		if _, err := api.ParseMode(m.Mode); err != nil {
			return fmt.Errorf("%w: %v", ErrBadMeta, err)
		}
	}
	switch m.Service {
	case "", ServiceHealthy, ServiceUnhealthy:
	default:
		return fmt.Errorf("%w: service health %q is unknown", ErrBadMeta, m.Service)
	}
	return nil
}

// encodeMeta validates m and encodes it, refusing anything over
// memberlist.MetaMaxSize (memberlist panics on oversized metadata).
func encodeMeta(m Meta, leaving bool, boot uint64) ([]byte, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	b, err := api.Encode(metaWire{M: m, Leaving: leaving, Boot: boot})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadMeta, err)
	}
	if len(b) > memberlist.MetaMaxSize {
		return nil, fmt.Errorf("%w: %d bytes encoded, limit %d", ErrBadMeta, len(b), memberlist.MetaMaxSize)
	}
	return b, nil
}

// decodeMeta decodes and validates node metadata, and checks that it belongs
// to the node name it came with.
func decodeMeta(name string, b []byte) (Meta, metaWire, error) {
	if len(b) > memberlist.MetaMaxSize {
		return Meta{}, metaWire{}, fmt.Errorf("%w of %s: %d bytes, limit %d", ErrBadMeta, name, len(b), memberlist.MetaMaxSize)
	}
	var w metaWire
	if err := api.Decode(b, &w); err != nil {
		return Meta{}, metaWire{}, fmt.Errorf("%w of %s: %v", ErrBadMeta, name, err)
	}
	if err := w.M.Validate(); err != nil {
		return Meta{}, metaWire{}, fmt.Errorf("meta of %s: %w", name, err)
	}
	if want := NodeName(w.M.Group, w.M.ID); want != name {
		return Meta{}, metaWire{}, fmt.Errorf("%w: node %q carries the metadata of %q", ErrBadMeta, name, want)
	}
	return w.M, w, nil
}
