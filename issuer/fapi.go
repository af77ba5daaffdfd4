package issuer

import (
	"errors"
	"fmt"
	"time"
)

// ProfileFAPI2 is the FAPI 2.0 Security Profile (OpenID Foundation, 2025):
// pushed authorization requests, PKCE S256, private_key_jwt for
// confidential clients, sender-constrained (DPoP) access tokens,
// authorization codes of at most 60 seconds and the iss parameter in the
// authorization response (RFC 9207, which this server always sends).
const ProfileFAPI2 = "fapi2"

// FAPI2MaxCodeLifetime is the longest authorization code life the FAPI 2.0
// profile allows; it is also the profile's default.
const FAPI2MaxCodeLifetime = 60 * time.Second

// applyProfile sets what a security profile requires of the server and
// refuses a configuration that contradicts it, naming the rule.
func (s *Server) applyProfile(cfg *Config) error {
	switch cfg.Profile {
	case "":
		return nil
	case ProfileFAPI2:
	default:
		return fmt.Errorf("issuer: unknown profile %q: want %s", cfg.Profile, ProfileFAPI2)
	}
	s.fapi2 = true
	s.requirePAR = true
	s.requirePKCE = true
	switch {
	case cfg.CodeLifetime == 0:
		s.codeTTL = FAPI2MaxCodeLifetime
	case cfg.CodeLifetime > FAPI2MaxCodeLifetime:
		return fmt.Errorf("issuer: profile fapi2: authorization codes live at most %v, not %v", FAPI2MaxCodeLifetime, cfg.CodeLifetime)
	}
	if s.singleUse == nil {
		return errors.New("issuer: profile fapi2: pushed authorization requests and private_key_jwt need an authorization code store that keeps single-use values (stores.SingleUse)")
	}
	return nil
}

// checkProfileDPoP refuses the profile without DPoP, after the clients were
// checked so that a client's contradiction is reported first.
func (s *Server) checkProfileDPoP() error {
	if !s.fapi2 {
		return nil
	}
	if s.dpop == nil {
		return errors.New("issuer: profile fapi2: sender-constrained access tokens need DPoP (RFC 9449) to be on")
	}
	s.requireDPoP = true
	return nil
}

// checkClientProfile refuses a client the profile does not allow, saying
// which rule it breaks; the caller names the client.
func (s *Server) checkClientProfile(c *client) error {
	if !s.fapi2 {
		return nil
	}
	if c.AuthMethod == AuthMethodBasic || c.AuthMethod == AuthMethodPost {
		return errors.New("profile fapi2: a confidential client must authenticate with private_key_jwt, not a client secret (jwks_uri or jwks instead of secret_hash)")
	}
	return nil
}
