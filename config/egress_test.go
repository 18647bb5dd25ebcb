package config

import (
	"slices"
	"testing"
)

// TestEgressAllowUnsetEmptyAndSet: unset (nil) keeps the default, an empty
// value or "none" means nothing, a list is split on commas; from the file,
// the environment and the flag alike.
func TestEgressAllowUnsetEmptyAndSet(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		want []string // nil: unset
	}{
		{"unset", nil, nil},
		{"empty", map[string]string{"NIMBUS_EGRESS_ALLOW": ""}, []string{}},
		{"none", map[string]string{"NIMBUS_EGRESS_ALLOW": "none"}, []string{"none"}},
		{"list", map[string]string{"NIMBUS_EGRESS_ALLOW": "10.0.0.0/8, fd00::/8,"}, []string{"10.0.0.0/8", "fd00::/8"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Default()
			if err := c.LoadEnv(func(k string) (string, bool) { v, ok := tc.env[k]; return v, ok }); err != nil {
				t.Fatal(err)
			}
			if (c.EgressAllow == nil) != (tc.want == nil) || !slices.Equal(c.EgressAllow, tc.want) {
				t.Errorf("EgressAllow = %#v, want %#v", c.EgressAllow, tc.want)
			}
			if err := c.Validate(); err != nil {
				t.Error(err)
			}
		})
	}
	c := Default()
	if err := c.loadYAML("c.yaml", []byte("egressAllow: []\nsourceFetchTimeout: 2m\nsecretsDir: /s\n")); err != nil {
		t.Fatal(err)
	}
	if c.EgressAllow == nil || len(c.EgressAllow) != 0 || c.SourceFetchTimeout.Minutes() != 2 || c.SecretsDir != "/s" {
		t.Errorf("from YAML: %#v %v %q", c.EgressAllow, c.SourceFetchTimeout, c.SecretsDir)
	}
}
