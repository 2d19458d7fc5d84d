// go-hello prints a greeting and the Go runtime it was built with: enough to
// show that a binary from pallet-go runs on base-go.
package main

import (
	"fmt"
	"runtime"
)

func main() {
	fmt.Printf("hello from StageX (%s, %s/%s)\n", runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
