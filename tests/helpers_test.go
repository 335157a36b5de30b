package tests

import (
	"context"
	"testing"
	"time"

	"github.com/mongolock/mongolock"
	"github.com/mongolock/mongolock/mongolocktest"
)

// testCtx returns a context that ends with the test (or after a minute).
func testCtx(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// newClient connects a Client to srv's fresh database; it is closed when
// the test ends.
func newClient(t testing.TB, srv *mongolocktest.Server, opts ...mongolock.Option) *mongolock.Client {
	t.Helper()
	opts = append([]mongolock.Option{mongolock.WithDatabase(srv.Database())}, opts...)
	c, err := mongolock.Connect(testCtx(t), srv.URI(), opts...)
	if err != nil {
		t.Fatalf("Connect: %v", err)
	}
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	return c
}

func mustLock(t testing.TB, c *mongolock.Client, key, owner string, opts ...mongolock.LockOption) {
	t.Helper()
	ok, err := c.Lock(testCtx(t), key, owner, opts...)
	if err != nil || !ok {
		t.Fatalf("Lock(%q, %q) = %v, %v; want true, nil", key, owner, ok, err)
	}
}

func mustInfo(t testing.TB, c *mongolock.Client, key string) *mongolock.LockInfo {
	t.Helper()
	info, err := c.Info(testCtx(t), key)
	if err != nil {
		t.Fatalf("Info(%q): %v", key, err)
	}
	return info
}

func testCtxCancel(t testing.TB, d time.Duration) (context.Context, context.CancelFunc) {
	t.Helper()
	return context.WithTimeout(testCtx(t), d)
}
