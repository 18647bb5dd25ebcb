package apply

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/nimbus-ai/nimbus/spec"
)

// TestDecodesWaitForASlot: with every decode slot taken, an apply waits, and
// gives up with its request's context; a free slot lets it through.
func TestDecodesWaitForASlot(t *testing.T) {
	e := NewEngine(Options{MaxDecodes: 1})
	req := spec.Request{Files: []spec.File{{Name: "bad.yaml", Content: "kind: Nope\n"}}}
	e.decodes <- struct{}{} // another request is decoding
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := e.Apply(ctx, req); !errors.Is(err, context.Canceled) {
		t.Fatalf("apply with every slot taken = %v, want it to give up with its context", err)
	}
	if _, err := e.DeleteFiles(ctx, req); !errors.Is(err, context.Canceled) {
		t.Fatalf("delete with every slot taken = %v, want it to give up with its context", err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := e.Apply(context.Background(), req)
		done <- err
	}()
	<-e.decodes // the other request is done
	var fes spec.Errors
	if err := <-done; !errors.As(err, &fes) || !strings.Contains(fes.Error(), "unknown kind") {
		t.Fatalf("apply after the slot freed = %v, want the document's errors", err)
	}
	if n := len(e.decodes); n != 0 {
		t.Errorf("%d slots still taken", n)
	}
}
