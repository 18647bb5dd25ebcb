// Package cli is the nimbus command tree: the server, and the client commands that
// talk to the management and inference APIs. Commands are thin; they parse flags,
// call the client and format output (table, json, yaml).
package cli
