package throttle

import (
	"encoding/binary"
	"fmt"
	"math"
)

// A record is how numbers cross to and from decide.lua: each a
// little-endian double, exact for the integers used here (below 2^53), so
// that the script unpacks them in one call instead of parsing text (see
// pack_record in lua/common.lua).

// record packs v as a record.
func record(v ...int64) string {
	b := make([]byte, 8*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint64(b[8*i:], math.Float64bits(float64(x)))
	}
	return string(b)
}

// readRecord unpacks n numbers from the record b.
func readRecord(b []byte, n int) ([]int64, error) {
	if len(b) != 8*n {
		return nil, fmt.Errorf("throttle: unexpected script reply of %d bytes, want %d numbers", len(b), n)
	}
	v := make([]int64, n)
	for i := range v {
		v[i] = int64(math.Float64frombits(binary.LittleEndian.Uint64(b[8*i:])))
	}
	return v, nil
}
