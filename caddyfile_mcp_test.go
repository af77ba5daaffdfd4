package oauth2

import (
	"reflect"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

func TestUnmarshalMCPOptions(t *testing.T) {
	var a App
	err := a.UnmarshalCaddyfile(caddyfile.NewTestDispenser(`oauth2 {
		resources https://api.example/v1 https://mcp.example/mcp
		client_id_metadata_documents {
			scopes mcp:tools mcp:read
			allow_hosts *.example.com vscode.dev
			allow_private_addresses
			root_ca /etc/caddy/test-ca.pem
		}
	}`))
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"https://api.example/v1", "https://mcp.example/mcp"}; !reflect.DeepEqual(a.Resources, want) {
		t.Errorf("resources %v", a.Resources)
	}
	want := &ClientIDMetadataDocuments{Scopes: []string{"mcp:tools", "mcp:read"}, AllowHosts: []string{"*.example.com", "vscode.dev"},
		AllowPrivateAddresses: true, RootCA: "/etc/caddy/test-ca.pem"}
	if !reflect.DeepEqual(a.ClientIDMetadataDocuments, want) {
		t.Errorf("client_id_metadata_documents %+v", a.ClientIDMetadataDocuments)
	}
	var empty App
	if err := empty.UnmarshalCaddyfile(caddyfile.NewTestDispenser("oauth2 {\n client_id_metadata_documents\n}")); err != nil ||
		empty.ClientIDMetadataDocuments == nil {
		t.Errorf("an empty block turns documents on: %v %+v", err, empty.ClientIDMetadataDocuments)
	}
	for input, want := range map[string]string{
		"oauth2 {\n resources\n}":                                                         "Testfile:2",
		"oauth2 {\n resources a\n resources b\n}":                                         `duplicate subdirective "resources"`,
		"oauth2 {\n client_id_metadata_documents on\n}":                                   "Testfile:2",
		"oauth2 {\n client_id_metadata_documents {\n  scopes\n }\n}":                      "Testfile:3",
		"oauth2 {\n client_id_metadata_documents {\n  allow_private_addresses yes\n }\n}": "Testfile:3",
		"oauth2 {\n client_id_metadata_documents {\n  root_ca a b\n }\n}":                 "Testfile:3",
		"oauth2 {\n client_id_metadata_documents {\n  scopes a\n  scopes b\n }\n}":        `duplicate subdirective "scopes" in client_id_metadata_documents`,
		"oauth2 {\n client_id_metadata_documents {\n  fetch_timeout 1s\n }\n}":            `unrecognized subdirective "fetch_timeout" in client_id_metadata_documents`,
	} {
		err := new(App).UnmarshalCaddyfile(caddyfile.NewTestDispenser(input))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", input, err, want)
		}
	}
}

func TestUnmarshalGuardResource(t *testing.T) {
	var g Guard
	err := g.UnmarshalCaddyfile(caddyfile.NewTestDispenser(`oauth2_guard {
		resource https://mcp.example.com/mcp
		resource_name "Example tools"
		scopes mcp:tools
	}`))
	if err != nil {
		t.Fatal(err)
	}
	if g.Resource != "https://mcp.example.com/mcp" || g.ResourceName != "Example tools" || !reflect.DeepEqual(g.Scopes, []string{"mcp:tools"}) {
		t.Errorf("parsed %+v", g)
	}
	for input, want := range map[string]string{
		"oauth2_guard {\n resource\n}":                          "Testfile:2",
		"oauth2_guard {\n resource a b\n}":                      "Testfile:2",
		"oauth2_guard {\n resource a\n resource b\n}":           `duplicate subdirective "resource"`,
		"oauth2_guard {\n resource_name\n}":                     "Testfile:2",
		"oauth2_guard {\n resource_name a\n resource_name b\n}": `duplicate subdirective "resource_name"`,
	} {
		err := new(Guard).UnmarshalCaddyfile(caddyfile.NewTestDispenser(input))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", input, err, want)
		}
	}
}
