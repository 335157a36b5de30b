//go:build !unix

package main

import (
	"context"
	"io"
	"os"
)

// watchFile closes eof when f reaches end of file (or cannot be read any
// more), reading and discarding what arrives before. Without poll(2) the
// read blocks: the goroutine ends at end of file or with the process.
func watchFile(ctx context.Context, f *os.File, eof chan<- struct{}) {
	_, _ = io.Copy(io.Discard, f)
	close(eof)
}
