package worker

// TaskTicket returns the throttle.Request.Ticket under which the Throttler
// books a task's tokens: its queue and id, "queue:id". Tokens booked under a
// task's ticket before it runs (as the Shaper does) are redeemed by the
// middleware when the task comes, instead of being charged again.
func TaskTicket(queue, id string) string { return queue + ":" + id }
