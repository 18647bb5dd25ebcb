package onnx

import (
	"errors"
	"fmt"
	"strings"
)

// A model Nimbus serves must be self-contained: nothing in it may make ONNX
// Runtime open a file. ONNX lets any tensor keep its bytes in an "external
// data" file named by a relative location; a model loaded from memory has its
// locations resolved against the server's working directory, so "../" reaches
// any file the server can read (and ONNX Runtime reads the location
// "*/_ORT_MEM_ADDR_/*" as a memory address). A tensor can sit in a graph's
// initializers and sparse initializers, in any node attribute (Constant's
// value, and every TENSOR(S) and SPARSE_TENSOR(S) attribute), in subgraphs of
// If/Loop/Scan (GRAPH(S) attributes, to any depth), in model-local functions
// (their nodes and attribute defaults) and in training_info graphs: the check
// walks all of them. EPContext nodes, which name a precompiled blob an
// execution provider may read from a file, are refused as well. See
// docs/security/models.md for what else was checked.

// Field numbers from onnx/onnx.proto of the messages that can hold a tensor or a graph.
const (
	modelTrainingInfo = 20
	modelFunctions    = 25

	trainingInitialization = 1
	trainingAlgorithm      = 2

	graphNode = 1

	nodeName      = 3
	nodeOpType    = 4
	nodeAttribute = 5
	nodeDomain    = 7

	attrName          = 1
	attrT             = 5
	attrG             = 6
	attrTensors       = 10
	attrGraphs        = 11
	attrSparseTensor  = 22
	attrSparseTensors = 23

	funcName          = 1
	funcNode          = 7
	funcDomain        = 10
	funcAttributeDflt = 11 // FunctionProto.attribute_proto: attribute defaults

	tensorExternalData = 13
	tensorDataLocation = 14 // DataLocation: 0 DEFAULT, 1 EXTERNAL

	sparseIndices = 2

	entryKey   = 1
	entryValue = 2

	// maxGraphDepth bounds subgraph nesting (a Loop in an If in a Scan...); real
	// models nest two or three levels.
	maxGraphDepth = 32
)

// selfContainedHint tells the user how to fix a model with external data.
const selfContainedHint = "Nimbus accepts only self-contained ONNX models: " +
	"re-save with onnx.save_model(..., save_as_external_data=False)"

// refusal is a model that decodes but that Nimbus will not hand to ONNX
// Runtime. where names the offending part, innermost first (where[0] is the
// subject of what); callers add the places around it as the error goes up.
type refusal struct {
	where []string
	what  string
	hint  string
}

func (r *refusal) Error() string {
	var places []string // outermost first
	for i := len(r.where) - 1; i >= 1; i-- {
		places = append(places, r.where[i])
	}
	if n := len(places); n > 2*maxPlacesShown {
		skipped := fmt.Sprintf("(%d more)", n-2*maxPlacesShown)
		places = append(append(places[:maxPlacesShown:maxPlacesShown], skipped), places[n-maxPlacesShown:]...)
	}
	var b strings.Builder
	if len(places) > 0 {
		b.WriteString(strings.Join(places, ", "))
		b.WriteString(": ")
	}
	if len(r.where) > 0 {
		b.WriteString(r.where[0])
		b.WriteString(" ")
	}
	b.WriteString(r.what)
	if r.hint != "" {
		b.WriteString("; ")
		b.WriteString(r.hint)
	}
	return b.String()
}

// maxPlacesShown is how many of the outermost and of the innermost places a
// refusal names; deeply nested ones elide the middle.
const maxPlacesShown = 6

// within says where err happened: one more place for a refusal, a prefix for a
// decoding error. place is only computed when there is an error.
func within(err error, place func() string) error {
	if err == nil {
		return nil
	}
	var r *refusal
	if errors.As(err, &r) {
		r.where = append(r.where, place())
		return r
	}
	return fmt.Errorf("%s: %w", place(), err)
}

// checkSelfContained walks every part of the model that can hold a tensor or a
// graph and refuses anything that would make ONNX Runtime open a file.
func (w *walker) checkSelfContained(model span) error {
	training := 0
	return w.each(model, func(f field) error {
		switch f.num {
		case modelGraph:
			return w.checkGraph(f.val, 0)
		case modelTrainingInfo:
			if err := bytesOf(f); err != nil {
				return err
			}
			i := training
			training++
			return w.each(f.val, func(g field) error {
				if g.num != trainingInitialization && g.num != trainingAlgorithm {
					return nil
				}
				if err := bytesOf(g); err != nil {
					return err
				}
				return within(w.checkGraph(g.val, 1), func() string {
					which := "initialization"
					if g.num == trainingAlgorithm {
						which = "algorithm"
					}
					return fmt.Sprintf("training_info %d %s graph", i, which)
				})
			})
		case modelFunctions:
			if err := bytesOf(f); err != nil {
				return err
			}
			return within(w.checkFunction(f.val), func() string {
				return fmt.Sprintf("function %q (domain %q)", w.lastString(f.val, funcName), w.lastString(f.val, funcDomain))
			})
		}
		return nil
	})
}

func (w *walker) checkGraph(g span, depth int) error {
	return w.each(g, func(f field) error {
		switch f.num {
		case graphNode:
			if err := bytesOf(f); err != nil {
				return err
			}
			return within(w.checkNode(f.val, depth), func() string { return w.nodePlace(f.val) })
		case graphInitializer:
			if err := bytesOf(f); err != nil {
				return err
			}
			return w.checkTensor(f.val, "initializer")
		case graphSparseInitializer:
			if err := bytesOf(f); err != nil {
				return err
			}
			return w.checkSparse(f.val, "sparse initializer")
		}
		return nil
	})
}

func (w *walker) nodePlace(n span) string {
	op := w.lastString(n, nodeOpType)
	if name := w.lastString(n, nodeName); name != "" {
		return fmt.Sprintf("node %q (%s)", name, op)
	}
	return fmt.Sprintf("unnamed node (%s)", op)
}

func (w *walker) checkNode(n span, depth int) error {
	var op string
	err := w.each(n, func(f field) error {
		switch f.num {
		case nodeOpType:
			if err := bytesOf(f); err != nil {
				return err
			}
			op = w.shown(f.val)
		case nodeDomain:
			if err := bytesOf(f); err != nil {
				return err
			}
		case nodeAttribute:
			if err := bytesOf(f); err != nil {
				return err
			}
			return within(w.checkAttribute(f.val, depth), func() string {
				return fmt.Sprintf("attribute %q", w.lastString(f.val, attrName))
			})
		}
		return nil
	})
	if err != nil {
		return err
	}
	// An EPContext node carries an execution provider's compiled model, inline
	// or (embed_mode 0) in a file its ep_cache_context attribute names.
	if op == "EPContext" {
		return &refusal{what: "is an EPContext node (a precompiled execution-provider blob, which ONNX Runtime " +
			"may read from a file the model names); Nimbus serves only portable ONNX graphs"}
	}
	return nil
}

func (w *walker) checkAttribute(a span, depth int) error {
	graphs := 0
	return w.each(a, func(f field) error {
		switch f.num {
		case attrT, attrTensors:
			if err := bytesOf(f); err != nil {
				return err
			}
			return w.checkTensor(f.val, "tensor")
		case attrSparseTensor, attrSparseTensors:
			if err := bytesOf(f); err != nil {
				return err
			}
			return w.checkSparse(f.val, "sparse tensor")
		case attrG, attrGraphs:
			if err := bytesOf(f); err != nil {
				return err
			}
			if depth+1 > maxGraphDepth {
				return &refusal{what: fmt.Sprintf("nests subgraphs more than %d levels deep", maxGraphDepth)}
			}
			err := w.checkGraph(f.val, depth+1)
			if f.num == attrGraphs {
				i := graphs
				graphs++
				err = within(err, func() string { return fmt.Sprintf("graph %d", i) })
			}
			return err
		}
		return nil
	})
}

func (w *walker) checkFunction(fn span) error {
	return w.each(fn, func(f field) error {
		switch f.num {
		case funcNode:
			if err := bytesOf(f); err != nil {
				return err
			}
			return within(w.checkNode(f.val, 1), func() string { return w.nodePlace(f.val) })
		case funcAttributeDflt:
			if err := bytesOf(f); err != nil {
				return err
			}
			return within(w.checkAttribute(f.val, 1), func() string {
				return fmt.Sprintf("default of attribute %q", w.lastString(f.val, attrName))
			})
		}
		return nil
	})
}

// checkTensor refuses a TensorProto that keeps its data outside the model:
// data_location EXTERNAL (ONNX Runtime's test) or any external_data entry
// (stricter: an entry alone is never meaningful). kind names it in the message.
func (w *walker) checkTensor(t span, kind string) error {
	var (
		external bool
		location string
	)
	err := w.each(t, func(f field) error {
		switch f.num {
		case tensorExternalData:
			if err := bytesOf(f); err != nil {
				return err
			}
			external = true
			if w.lastString(f.val, entryKey) == "location" {
				location = w.lastString(f.val, entryValue)
			}
		case tensorDataLocation:
			if err := varintOf(f); err != nil {
				return err
			}
			external = external || f.v != 0
		}
		return nil
	})
	if err != nil {
		return within(err, func() string { return kind })
	}
	if !external {
		return nil
	}
	subject := kind
	if name := w.lastString(t, tensorName); name != "" {
		subject = fmt.Sprintf("%s %q", kind, name)
	}
	what := "is marked as keeping its data in an external file"
	if location != "" {
		what = fmt.Sprintf("keeps its data in an external file (%q)", location)
	}
	return &refusal{where: []string{subject}, what: what, hint: selfContainedHint}
}

// checkSparse checks a SparseTensorProto's values and indices; its name is its
// values' name.
func (w *walker) checkSparse(s span, kind string) error {
	return w.each(s, func(f field) error {
		if f.num != sparseValues && f.num != sparseIndices {
			return nil
		}
		if err := bytesOf(f); err != nil {
			return err
		}
		part := "values"
		if f.num == sparseIndices {
			part = "indices"
		}
		err := w.checkTensor(f.val, kind)
		var r *refusal
		if errors.As(err, &r) && len(r.where) == 1 {
			subject := kind
			if name := w.sparseName(s); name != "" {
				subject = fmt.Sprintf("%s %q", kind, name)
			}
			r.where[0] = subject + " (" + part + ")"
		}
		return err
	})
}

// sparseName is the name of a SparseTensorProto (its values' name), for messages.
func (w *walker) sparseName(s span) string {
	if values, ok := w.lastBytes(s, sparseValues); ok {
		return w.lastString(values, tensorName)
	}
	return ""
}
