package tenantstatus

import (
	"context"
	"errors"
	"fmt"

	"github.com/hibiken/asynq"

	"github.com/quotaq/quotaq/worker"
)

// pageSize is how many tasks one Inspector call lists.
const pageSize = 1000

// CountTasks counts the tasks of each tenant in queues, or in every queue
// when queues is empty: the tenant the worker finds on a task (its
// TenantHeader header, else the "tenant" field of its JSON payload; see
// worker.TaskTenant). Tasks with neither are counted under "". It lists every pending, scheduled, retry, active and
// archived task, a page at a time: its cost grows with the queues' length
// (one to a few seconds per 100,000 tasks on a small machine).
func CountTasks(ctx context.Context, insp *asynq.Inspector, queues []string) (map[string]Tasks, error) {
	if len(queues) == 0 {
		var err error
		if queues, err = insp.Queues(); err != nil {
			return nil, fmt.Errorf("tenantstatus: list queues: %w", err)
		}
	}
	counts := map[string]Tasks{}
	type lister struct {
		list func(string, ...asynq.ListOption) ([]*asynq.TaskInfo, error)
		add  func(*Tasks)
	}
	listers := []lister{
		{insp.ListPendingTasks, func(t *Tasks) { t.Pending++ }},
		{insp.ListScheduledTasks, func(t *Tasks) { t.Scheduled++ }},
		{insp.ListRetryTasks, func(t *Tasks) { t.Retry++ }},
		{insp.ListActiveTasks, func(t *Tasks) { t.Active++ }},
		{insp.ListArchivedTasks, func(t *Tasks) { t.Archived++ }},
	}
	for _, q := range queues {
		for _, ls := range listers {
			for page := 1; ; page++ {
				if err := ctx.Err(); err != nil {
					return nil, err
				}
				infos, err := ls.list(q, asynq.PageSize(pageSize), asynq.Page(page))
				if errors.Is(err, asynq.ErrQueueNotFound) {
					break
				}
				if err != nil {
					return nil, fmt.Errorf("tenantstatus: list tasks of queue %q: %w", q, err)
				}
				for _, ti := range infos {
					tenant, _ := worker.TaskTenant(asynq.NewTaskWithHeaders(ti.Type, ti.Payload, ti.Headers))
					c := counts[tenant]
					ls.add(&c)
					counts[tenant] = c
				}
				if len(infos) < pageSize {
					break
				}
			}
		}
	}
	return counts, nil
}
