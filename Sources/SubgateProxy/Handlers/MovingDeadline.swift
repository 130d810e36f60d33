import NIOCore

/// A deadline that moves with every request, kept with as few scheduled tasks as possible.
///
/// The connection timers (`header_read_timeout`, `idle_timeout`, `upstream_timeout`) are
/// re-armed for every request. Cancelling and scheduling a task each time cost a heap
/// allocation and two timer-queue updates per request in the bench's profile. Instead, the
/// deadline is a plain value; a task is scheduled only when none is pending at or before it.
/// When the task fires early (the deadline moved later), it re-arms itself at the deadline.
/// A task therefore never fires after the deadline, and a timeout is exact to the deadline.
///
/// Loop-bound: used only on the owning channel's event loop.
struct MovingDeadline {
    /// The current deadline; nil when nothing is timed.
    private(set) var deadline: NIODeadline?
    private var task: Scheduled<Void>?
    private var taskAt: NIODeadline = .distantFuture

    /// Times `deadline`. `fire` runs on `loop` at or before it, and must call `fired(now:)`.
    mutating func set(_ deadline: NIODeadline, on loop: any EventLoop, fire: @escaping () -> Void) {
        self.deadline = deadline
        if self.task != nil && self.taskAt <= deadline { return }
        self.task?.cancel()
        self.taskAt = deadline
        self.task = loop.assumeIsolated().scheduleTask(deadline: deadline, fire)
    }

    /// Nothing is timed any more; a pending task stays, to be reused by the next `set`.
    mutating func clear() {
        self.deadline = nil
    }

    /// Cancels everything (the handler is going away).
    mutating func cancel() {
        self.task?.cancel()
        self.task = nil
        self.deadline = nil
    }

    /// The task fired. True when the deadline has passed (it is cleared, and the caller acts);
    /// false when there is nothing to do or when the deadline moved later (then the task is
    /// re-armed at the deadline with `fire`).
    mutating func fired(now: NIODeadline, on loop: any EventLoop, fire: @escaping () -> Void) -> Bool {
        self.task = nil
        self.taskAt = .distantFuture
        guard let deadline = self.deadline else { return false }
        if deadline <= now {
            self.deadline = nil
            return true
        }
        self.set(deadline, on: loop, fire: fire)
        return false
    }
}
