package main

import (
	"fmt"
	"io"
)

func runLive(args []string, stdout, stderr io.Writer) int {
	fmt.Fprintln(stderr, "tschsensor run: live capture is not built yet")
	return 2
}
