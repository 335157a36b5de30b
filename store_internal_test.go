package mongolock

import (
	"bytes"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// TestShapeGuardRawSameBytes checks that the pre-encoded shape guard
// (shapeGuardRaw) puts on the wire exactly the bytes the guard's documents
// encode to, inside the filters guarded builds.
func TestShapeGuardRawSameBytes(t *testing.T) {
	if len(shapeGuardRaw) != len(shapeGuard) {
		t.Fatalf("%d raw clauses for %d", len(shapeGuardRaw), len(shapeGuard))
	}

	conds := [][]bson.D{
		nil,
		{{{Key: fieldToken, Value: "t"}}},
		{{{Key: fieldToken, Value: "t"}}, {{Key: fieldLocked, Value: true}}},
	}

	for _, c := range conds {
		got, err := bson.Marshal(guarded("key", c...))
		if err != nil {
			t.Fatal(err)
		}

		and := append(bson.A{}, shapeGuard...)
		for _, d := range c {
			and = append(and, d)
		}

		want, err := bson.Marshal(bson.D{{Key: fieldKey, Value: "key"}, {Key: "$and", Value: and}})
		if err != nil {
			t.Fatal(err)
		}

		if !bytes.Equal(got, want) {
			t.Errorf("guarded with %v:\n got %v\nwant %v", c, bson.Raw(got), bson.Raw(want))
		}
	}
}
