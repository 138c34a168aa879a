package core

import (
	"fmt"

	"github.com/mastership/mastership/agent/rlog"
	"github.com/mastership/mastership/naming/api"
)

// MsgType names an agent-to-agent message.
type MsgType uint8

// Message types.
const (
	// MsgAppend carries entries and the commit index from a master to a
	// back-up; an empty one is the heartbeat.
	MsgAppend MsgType = iota + 1
	// MsgAppendResp answers MsgAppend: how far the back-up's log matches,
	// or a refusal with the back-up's epoch or last index.
	MsgAppendResp
	// MsgVote asks for a vote for a candidate epoch.
	MsgVote
	// MsgVoteResp grants or refuses a vote.
	MsgVoteResp
	// MsgTrigger tells an agent that another master of its group saw its
	// claim: it raises the receiver's event trigger (the self-monitor runs).
	MsgTrigger
	// MsgTransferReq asks the master to hand mastership over to the sender
	// (planned handover, figure 10 act 1080).
	MsgTransferReq
	// MsgTimeoutNow tells a back-up that is in sync to campaign at once:
	// the master hands over to it.
	MsgTimeoutNow
)

var msgNames = [...]string{"", "MsgAppend", "MsgAppendResp", "MsgVote", "MsgVoteResp", "MsgTrigger", "MsgTransferReq", "MsgTimeoutNow"}

func (t MsgType) String() string {
	if int(t) < len(msgNames) && t != 0 {
		return msgNames[t]
	}
	return fmt.Sprintf("MsgType(%d)", t)
}

// Message is every agent-to-agent message. Every message carries the
// sender's epoch, the fencing token.
type Message struct {
	Type  MsgType   `codec:"y"`
	Group string    `codec:"g"`
	From  uint64    `codec:"f"`
	To    uint64    `codec:"o"`
	Epoch api.Epoch `codec:"e"`

	// MsgAppend.
	PrevIndex uint64       `codec:"pi"`
	PrevHash  [32]byte     `codec:"ph"`
	Entries   []rlog.Entry `codec:"en"`
	Commit    uint64       `codec:"c"`
	// Sent is the master's tick when it sent the append, echoed back so
	// that the master knows since when a back-up has heard from it (lease).
	Sent uint64 `codec:"s"`
	// Base is the master's snapshot base: a back-up whose log ends below it
	// cannot catch up from the log and downloads the state instead.
	Base uint64 `codec:"b"`

	// MsgAppendResp and MsgVoteResp.
	Reject bool `codec:"r"`
	// Match is the last index the back-up's log holds in agreement with
	// the master's.
	Match uint64 `codec:"m"`

	// MsgVote: the candidate's last entry, so voters refuse a candidate
	// whose log is behind theirs; MsgAppendResp: the back-up's last index.
	LastIndex uint64    `codec:"li"`
	LastEpoch api.Epoch `codec:"le"`
	// Priority of the sender, so receivers can rank candidates.
	Priority int `codec:"p"`

	// MsgTrigger: why.
	Reason string `codec:"why"`

	// MsgAppendResp: the back-up takes no appends now (recovering,
	// syncing, quarantined, or following another master): the master
	// waits for its next heartbeat instead of resending at once.
	Busy bool `codec:"bz"`

	// MsgVote: a campaign the master started by MsgTimeoutNow; voters
	// grant it although they still hear that master.
	Transfer bool `codec:"x"`

	// MsgTimeoutNow: the handover was an operator's (a switchover);
	// MsgAppend: the master came to office that way. Back-ups do not ask
	// a pinned master to hand over by priority.
	Pinned bool `codec:"pin,omitempty"`

	// MsgAppend of an available master: the index every member of the
	// group holds by its account. Back-ups take no snapshot that would
	// compact their log past it (within Config.RetainEntries): should the
	// members that lack the rest elect their own master, those entries
	// are the writes recovery keeps as divergence records.
	Held uint64 `codec:"hd,omitempty"`
}

// String describes a message for logs and scenario output.
func (m Message) String() string {
	s := fmt.Sprintf("%s %d->%d epoch=%s", m.Type, m.From, m.To, m.Epoch)
	switch m.Type {
	case MsgAppend:
		s += fmt.Sprintf(" prev=%d entries=%d commit=%d", m.PrevIndex, len(m.Entries), m.Commit)
	case MsgAppendResp:
		s += fmt.Sprintf(" reject=%v match=%d last=%d", m.Reject, m.Match, m.LastIndex)
	case MsgVote:
		s += fmt.Sprintf(" last=%d@%s", m.LastIndex, m.LastEpoch)
	case MsgVoteResp:
		s += fmt.Sprintf(" granted=%v", !m.Reject)
	case MsgTrigger:
		s += " reason=" + m.Reason
	}
	return s
}
