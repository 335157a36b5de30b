package main

import (
	"fmt"
	"time"
)

// jsonTimeLayout is how times appear in the commands' JSON: RFC 3339 in
// UTC with milliseconds, the precision the server stores
// ("2026-01-02T15:04:05.123Z").
const jsonTimeLayout = "2006-01-02T15:04:05.000Z07:00"

// jsonTime is a server time in the commands' JSON.
type jsonTime time.Time

// jsonTimeOf returns t for JSON, or nil (null) when t is zero.
func jsonTimeOf(t time.Time) *jsonTime {
	if t.IsZero() {
		return nil
	}
	j := jsonTime(t)
	return &j
}

// MarshalJSON writes t in jsonTimeLayout.
func (t jsonTime) MarshalJSON() ([]byte, error) {
	return []byte(`"` + time.Time(t).UTC().Format(jsonTimeLayout) + `"`), nil
}

// UnmarshalJSON reads an RFC 3339 time.
func (t *jsonTime) UnmarshalJSON(b []byte) error {
	var tt time.Time
	if err := tt.UnmarshalJSON(b); err != nil {
		return fmt.Errorf("a time in RFC 3339: %w", err)
	}
	*t = jsonTime(tt)
	return nil
}

// Time returns t as a time.Time.
func (t jsonTime) Time() time.Time { return time.Time(t) }
