// Command kstatus prints the status that sigs.k8s.io/cli-utils' kstatus library (what Flux and
// kpt use) computes for each object given as JSON on standard input, one per line:
// `<status> <message>`. The tests feed it objects read live from the API server with
// `kubectl get -o json`, so what is checked is exactly what the operator wrote.
package main

import (
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

func main() {
	input, err := io.ReadAll(os.Stdin)
	if err != nil {
		fail("reading standard input: %v", err)
	}
	// apimachinery's own JSON decoding: integers stay integers, as kstatus expects of generations.
	var items []unstructured.Unstructured
	list := &unstructured.UnstructuredList{}
	if err := list.UnmarshalJSON(input); err == nil && list.GetKind() == "List" {
		items = list.Items
	} else {
		object := &unstructured.Unstructured{}
		if err := object.UnmarshalJSON(input); err != nil {
			fail("standard input is not a Kubernetes object: %v", err)
		}
		items = append(items, *object)
	}
	for index := range items {
		result, err := status.Compute(&items[index])
		if err != nil {
			fail("computing the status: %v", err)
		}
		fmt.Printf("%s %s\n", result.Status, result.Message)
	}
}

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "kstatus: "+format+"\n", args...)
	os.Exit(2)
}
