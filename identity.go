package mongolock

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"time"
	"unicode/utf8"
)

// newToken returns a 128-bit random acquisition token, hex-encoded.
func newToken() string {
	var b [16]byte
	// crypto/rand.Read never returns an error on supported platforms (Go 1.24+).
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// newOwner returns a unique owner name: host, pid and 48 random bits.
func newOwner() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "unknown-host"
	}
	if len(host) > 200 {
		host = host[:200]
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b[:]))
}

func validKey(key string) error {
	switch {
	case key == "":
		return argError("key", "must not be empty")
	case len(key) > maxKeyBytes:
		return argError("key", "must be at most %d bytes, got %d", maxKeyBytes, len(key))
	case !utf8.ValidString(key):
		return argError("key", "must be valid UTF-8")
	}
	return nil
}

func validOwner(owner string) error {
	switch {
	case owner == "":
		return argError("owner", "must not be empty")
	case len(owner) > maxOwnerBytes:
		return argError("owner", "must be at most %d bytes, got %d", maxOwnerBytes, len(owner))
	case !utf8.ValidString(owner):
		return argError("owner", "must be valid UTF-8")
	}
	return nil
}

func validExpire(arg string, d time.Duration) error {
	switch {
	case d < 0:
		return argError(arg, "must not be negative, got %v", d)
	case d < time.Millisecond:
		return argError(arg, "must be at least 1ms (stored times have millisecond resolution), got %v", d)
	}
	return nil
}
