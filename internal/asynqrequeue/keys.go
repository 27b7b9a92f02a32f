package asynqrequeue

// asynq v0.26 key layout (internal/base/base.go). Every key of a queue shares
// the hash tag {<queue>}, so a script may touch them together on a Cluster.

func queuePrefix(queue string) string { return "asynq:{" + queue + "}:" }

func taskKeyPrefix(queue string) string { return queuePrefix(queue) + "t:" }

func taskKey(queue, id string) string { return taskKeyPrefix(queue) + id }

func activeKey(queue string) string { return queuePrefix(queue) + "active" }

func leaseKey(queue string) string { return queuePrefix(queue) + "lease" }

func scheduledKey(queue string) string { return queuePrefix(queue) + "scheduled" }

func pendingKey(queue string) string { return queuePrefix(queue) + "pending" }

// allQueuesKey is the set of every queue's name.
const allQueuesKey = "asynq:queues"

// parkedKey is quotaq's own zset of a tenant's tasks of queue that wait for
// nothing booked (see Request.Tenant), under the queue's hash tag.
func parkedKey(queue, tenant string) string { return queuePrefix(queue) + "quotaq:parked:" + tenant }

// bookedKey is quotaq's own zset of a tenant's tasks of queue that wait for
// a booked slot (see Retime).
func bookedKey(queue, tenant string) string { return queuePrefix(queue) + "quotaq:booked:" + tenant }

// slotWaitKey is quotaq's own zset of the tasks of queue that wait for one
// of id's concurrency slots (see Request.WaitsForSlotOf, WakeOne).
func slotWaitKey(queue, id string) string { return queuePrefix(queue) + "quotaq:slotwait:" + id }
