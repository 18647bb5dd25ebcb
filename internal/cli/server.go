package cli

import "github.com/spf13/cobra"

// newServerCommand builds `nimbus server`. Owned by the lead: wires config and internal/system.
func newServerCommand() *cobra.Command {
	return &cobra.Command{Use: "server", Short: "Run the Nimbus server (control plane + data plane)"}
}
