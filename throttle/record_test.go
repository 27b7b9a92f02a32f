package throttle

import (
	"context"
	"math"
	"testing"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/quotaq/quotaq/internal/redistest"
)

// TestRecordsAgreeWithGo: the records the scripts pack and unpack are the
// bytes record writes and readRecord reads, with Redis's struct library
// and with the plain Lua that stands in for it on miniredis.
func TestRecordsAgreeWithGo(t *testing.T) {
	t.Parallel()
	values := []int64{0, 1, -1, 2, 3, 255, 256, 1000, 999999, -1000000, 1 << 52, 1<<53 - 1, -(1<<53 - 1),
		1796067321033055, 4000000000000000, 1e9, 123456789012}
	// the script unpacks ARGV[1], checks it against ARGV[2..] (as text),
	// and packs them again
	script := redis.NewScript(commonLua + `
local f = '<' .. string.rep('d', #ARGV - 1)
local v = {unpack_record(f, ARGV[1])}
if v[#v] ~= #ARGV[1] + 1 then return 'the position after the record is ' .. v[#v] end
for i = 2, #ARGV do
  if string.format('%d', v[i - 1]) ~= ARGV[i] then
    return 'number ' .. (i - 1) .. ' is ' .. string.format('%d', v[i - 1]) .. ', want ' .. ARGV[i]
  end
end
table.remove(v)
return pack_record(f, unpack(v))
`)
	m := miniredis.RunT(t)
	real, _ := redistest.Client(t)
	for name, c := range map[string]redis.UniversalClient{
		"redis-server (struct)": real,
		"miniredis (plain Lua)": redis.NewClient(&redis.Options{Addr: m.Addr()}),
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			args := []any{record(values...)}
			for _, v := range values {
				args = append(args, v)
			}
			got, err := script.Run(context.Background(), c, nil, args...).Text()
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 8*len(values) {
				t.Fatalf("the script answered %q, want a record of %d numbers", got, len(values))
			}
			back, err := readRecord([]byte(got), len(values))
			if err != nil {
				t.Fatal(err)
			}
			for i, v := range values {
				if back[i] != v {
					t.Errorf("number %d came back as %d, want %d", i, back[i], v)
				}
			}
			// a byte, as the token bucket's state starts with ('Q')
			marked := redis.NewScript(commonLua + `
local m, x, y = unpack_record('<Bdd', ARGV[1])
return pack_record('<Bdd', m + 1, x, y)`)
			got, err = marked.Run(context.Background(), c, nil, "Q"+record(7, -8)).Text()
			if err != nil || got != "R"+record(7, -8) {
				t.Errorf("a record with a byte: %q, %v, want %q", got, err, "R"+record(7, -8))
			}
		})
	}
}

// TestReadRecordRefusesAnotherLength: a reply of another size is an error
// that says so, not numbers read from the wrong place.
func TestReadRecordRefusesAnotherLength(t *testing.T) {
	t.Parallel()
	for _, b := range []string{"", record(1, 2), record(1, 2, 3) + "x"} {
		if _, err := readRecord([]byte(b), 3); err == nil {
			t.Errorf("readRecord(%d bytes, 3 numbers): no error", len(b))
		}
	}
	if v, err := readRecord([]byte(record(-1, math.MaxInt32)), 2); err != nil || v[0] != -1 || v[1] != math.MaxInt32 {
		t.Errorf("readRecord = %v, %v", v, err)
	}
}
