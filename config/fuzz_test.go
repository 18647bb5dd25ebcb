package config

import "testing"

// FuzzLoadYAML: any bytes as a config file give a config or an error, never a panic.
func FuzzLoadYAML(f *testing.F) {
	f.Add([]byte("dataDir: /tmp/x\nhttpAddr: 127.0.0.1:1\n"))
	f.Add([]byte("shutdownTimeout: 5s\nmaxBodyBytes: 1024\n"))
	f.Add([]byte("key: [unclosed\n"))
	f.Add([]byte("&a [*a]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c := Default()
		if err := c.loadYAML("fuzz.yaml", data); err == nil {
			_ = c.Validate()
		}
	})
}
