package enqueuecli

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/quotaq/quotaq/worker"
)

// costFlag is --cost: a whole number of 1 or more; 0 when not given.
type costFlag int64

func (c *costFlag) String() string {
	if c == nil || *c == 0 {
		return ""
	}
	return strconv.FormatInt(int64(*c), 10)
}

func (c *costFlag) Set(v string) error {
	n, err := worker.ParseCost(v)
	if err != nil {
		return errors.New("not a whole number of 1 or more")
	}
	*c = costFlag(n)
	return nil
}

// lineCost reads an NDJSON line's "cost": a JSON number that is a whole
// number of 1 or more.
func lineCost(raw json.RawMessage) (int64, error) {
	if raw[0] == '"' {
		return 0, fmt.Errorf("\"cost\" must be a number, not a JSON string (give e.g. \"cost\": 5)")
	}
	n, err := worker.ParseCost(string(raw))
	if err != nil {
		if len(raw) > 20 {
			raw = append(raw[:20:20], "..."...)
		}
		return 0, fmt.Errorf("\"cost\" %s is not a whole number of 1 or more", raw)
	}
	return n, nil
}
