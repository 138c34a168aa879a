package naming

// NonMemberAttempts bounds the deliveries of a trigger to a removed
// registrant that holds no member session.
const NonMemberAttempts = 5

// DeliveryEnds is the retry rule of a trigger delivery (figure 12, act
// 1240), shared by the node and the simulator: after attempt number
// attempt it ends when the trigger was delivered, when a newer trigger for
// the same target replaced it (stale), or when the target's member session
// ended; a target without a session (hasSession false) gets
// NonMemberAttempts.
func DeliveryEnds(delivered bool, attempt int, stale, hasSession, sessionLive bool) bool {
	live := sessionLive
	if !hasSession {
		live = attempt < NonMemberAttempts
	}
	return delivered || stale || !live
}

// NextDeliveryBackoff doubles a delivery's backoff, up to most (a duration,
// or ticks in the simulator).
func NextDeliveryBackoff[T ~int64](backoff, most T) T { return min(2*backoff, most) }
