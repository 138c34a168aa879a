package config

import "fmt"

// Profiles, after memberlist's DefaultLocalConfig, DefaultLANConfig and
// DefaultWANConfig: one set of timings for each kind of network, so an
// operator picks a profile and overrides a few fields instead of tuning all.
const (
	// ProfileLocal has short timings for tests and demos on one machine.
	ProfileLocal = "local"
	// ProfileLAN suits one data centre; it is the default.
	ProfileLAN = "lan"
	// ProfileWAN has timings three to five times longer than lan, for
	// groups spread over sites.
	ProfileWAN = "wan"
)

// Profiles lists the profile names in the order help text shows them.
func Profiles() []string { return []string{ProfileLocal, ProfileLAN, ProfileWAN} }

// checkProfile maps "" to the default profile and rejects unknown names.
func checkProfile(profile string) (string, error) {
	switch profile {
	case "":
		return ProfileLAN, nil
	case ProfileLocal, ProfileLAN, ProfileWAN:
		return profile, nil
	}
	return "", fmt.Errorf("%w %q: want %q, %q or %q", ErrUnknownProfile, profile, ProfileLocal, ProfileLAN, ProfileWAN)
}
