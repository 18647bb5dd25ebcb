// Package cliconfig reads and writes the CLI's config file
// (~/.config/nimbus/config.yaml): kubeconfig-style contexts, each a server URL,
// a token and a default namespace, and the current one. The CLI reads it; the
// server adds a context for itself when it makes its bootstrap token on a
// loopback-only address, so `make run` and the CLI on the same machine need no
// setup.
package cliconfig

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

// EnvPath names the variable that overrides the file's location.
const EnvPath = "NIMBUS_CLI_CONFIG"

// File is the CLI config file.
type File struct {
	CurrentContext string    `yaml:"currentContext,omitempty" json:"currentContext,omitempty"`
	Contexts       []Context `yaml:"contexts,omitempty" json:"contexts,omitempty"`
}

// Context is one server the CLI can talk to.
type Context struct {
	Name      string `yaml:"name" json:"name"`
	Server    string `yaml:"server" json:"server"`
	Token     string `yaml:"token,omitempty" json:"token,omitempty"`
	Namespace string `yaml:"namespace,omitempty" json:"namespace,omitempty"`
	// CertificateAuthority is a PEM file of CAs to trust for an https server.
	CertificateAuthority string `yaml:"certificateAuthority,omitempty" json:"certificateAuthority,omitempty"`
	// InsecureSkipTLSVerify trusts any certificate (testing only).
	InsecureSkipTLSVerify bool `yaml:"insecureSkipTLSVerify,omitempty" json:"insecureSkipTLSVerify,omitempty"`
}

// Path is where the file lives: $NIMBUS_CLI_CONFIG, else
// $XDG_CONFIG_HOME/nimbus/config.yaml, else $HOME/.config/nimbus/config.yaml;
// "" when none of those is set (then there is no file).
func Path(getenv func(string) string) string {
	if p := getenv(EnvPath); p != "" {
		return p
	}
	if d := getenv("XDG_CONFIG_HOME"); d != "" {
		return filepath.Join(d, "nimbus", "config.yaml")
	}
	if h := getenv("HOME"); h != "" {
		return filepath.Join(h, ".config", "nimbus", "config.yaml")
	}
	return ""
}

// maxFileBytes bounds what Load reads.
const maxFileBytes = 1 << 20

// Load reads the file at path; a missing file (or path "") is an empty File.
func Load(path string) (*File, error) {
	f := &File{}
	if path == "" {
		return f, nil
	}
	fh, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return f, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read CLI config: %w", err)
	}
	defer fh.Close()
	data, err := io.ReadAll(io.LimitReader(fh, maxFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read CLI config %s: %w", path, err)
	}
	if len(data) > maxFileBytes {
		return nil, fmt.Errorf("CLI config %s is larger than %d bytes", path, maxFileBytes)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(f); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("CLI config %s: %s", path, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	for i, c := range f.Contexts {
		if c.Name == "" || c.Server == "" {
			return nil, fmt.Errorf("CLI config %s: context %d needs a name and a server", path, i+1)
		}
	}
	return f, nil
}

// Save writes f to path atomically (temp file, fsync, rename), readable by the
// owner only: it holds tokens.
func (f *File) Save(path string) error {
	if path == "" {
		return errors.New("no CLI config path: set HOME or " + EnvPath)
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(f); err != nil {
		return fmt.Errorf("encode CLI config: %w", err)
	}
	data := buf.Bytes()
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("write CLI config: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".config-*.yaml")
	if err != nil {
		return fmt.Errorf("write CLI config: %w", err)
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	if _, err := tmp.Write(data); err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), 0o600)
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("write CLI config %s: %w", path, err)
	}
	return nil
}

// Get returns the context named name.
func (f *File) Get(name string) (Context, bool) {
	i := slices.IndexFunc(f.Contexts, func(c Context) bool { return c.Name == name })
	if i < 0 {
		return Context{}, false
	}
	return f.Contexts[i], true
}

// Current returns the current context, if one is set and exists.
func (f *File) Current() (Context, bool) {
	if f.CurrentContext == "" {
		return Context{}, false
	}
	return f.Get(f.CurrentContext)
}

// Set adds or replaces the context of the same name.
func (f *File) Set(c Context) {
	if i := slices.IndexFunc(f.Contexts, func(o Context) bool { return o.Name == c.Name }); i >= 0 {
		f.Contexts[i] = c
		return
	}
	f.Contexts = append(f.Contexts, c)
}

// Delete removes a context (and unsets it as current); false if there was none.
func (f *File) Delete(name string) bool {
	i := slices.IndexFunc(f.Contexts, func(c Context) bool { return c.Name == name })
	if i < 0 {
		return false
	}
	f.Contexts = slices.Delete(f.Contexts, i, i+1)
	if f.CurrentContext == name {
		f.CurrentContext = ""
	}
	return true
}

// Update loads the file at path, applies change and saves it.
func Update(path string, change func(*File) error) error {
	f, err := Load(path)
	if err != nil {
		return err
	}
	if err := change(f); err != nil {
		return err
	}
	return f.Save(path)
}
