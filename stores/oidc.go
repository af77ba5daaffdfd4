package stores

import "maps"

// Clone returns a copy of g that shares no memory with it, for caches
// that hand out copies of what they keep; nil stays nil.
func (g *OIDCGrant) Clone() *OIDCGrant {
	if g == nil {
		return nil
	}
	c := *g
	if g.Claims != nil {
		c.Claims = maps.Clone(g.Claims)
		for k, v := range c.Claims {
			switch l := v.(type) {
			case []any:
				c.Claims[k] = append([]any(nil), l...)
			case []string:
				c.Claims[k] = append([]string(nil), l...)
			}
		}
	}
	return &c
}
