package cassandra

import (
	"testing"

	"github.com/tokengate/caddy-oauth2/stores"
	"github.com/tokengate/caddy-oauth2/stores/storetest"
)

func TestFeedContract(t *testing.T) {
	storetest.RunFeed(t, func(t *testing.T) stores.RevocationFeed {
		return newTestEngine(t, defaults(t), nil)
	})
}
