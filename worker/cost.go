package worker

import (
	"fmt"
	"strconv"

	"github.com/hibiken/asynq"

	"github.com/quotaq/quotaq/throttle"
)

// CostHeader is the task header that says how many tokens, and quota units,
// a task costs: a whole number of 1 or more ("5"). A task without it costs
// 1. It is read unless WithCost says otherwise.
const CostHeader = "cost"

// ParseCost reads a CostHeader value: a whole number of 1 or more, in
// decimal. Its errors wrap throttle.ErrInvalidCost.
func ParseCost(v string) (int64, error) {
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("%w: %s is not a whole number of 1 or more", throttle.ErrInvalidCost, truncate(strconv.Quote(v), 40))
	}
	return n, nil
}

// headerCost is the default cost: the CostHeader header, 1 when absent.
func headerCost(task *asynq.Task) (int64, error) {
	v, ok := task.Headers()[CostHeader]
	if !ok {
		return 1, nil
	}
	n, err := ParseCost(v)
	if err != nil {
		return 0, fmt.Errorf("worker: %q header of task type %q: %w", CostHeader, task.Type(), err)
	}
	return n, nil
}
