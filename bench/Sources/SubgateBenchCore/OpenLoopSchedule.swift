/// When each request of an open-loop run is due, and what a connection does next.
///
/// Open loop means the target does not set the pace: request `i` (over all connections) is due
/// at `start + i / rate` whether or not earlier answers have come back. A connection carries
/// requests `c, c + N, c + 2N, …` of that sequence, one at a time (HTTP/1.1 without
/// pipelining). When an answer comes back late, the next request is sent at once and its
/// latency is still measured from its due time, so a stall shows as many slow requests
/// instead of one (no coordinated omission; wrk2's correction).
public struct OpenLoopSchedule: Sendable, Equatable {
    /// Requests per second, all connections together.
    public let rate: Double
    public let connections: Int

    public init(rate: Double, connections: Int) {
        precondition(rate > 0 && connections >= 1, "OpenLoopSchedule needs a positive rate and at least one connection")
        self.rate = rate
        self.connections = connections
    }

    /// Nanoseconds after the start at which request `sequence` of `connection` is due.
    public func dueOffset(connection: Int, sequence: Int) -> Int64 {
        let global = Double(sequence) * Double(self.connections) + Double(connection)
        return Int64((global * 1_000_000_000 / self.rate).rounded())
    }

    /// The gap between two requests of one connection, in nanoseconds.
    public var connectionInterval: Double { Double(self.connections) * 1_000_000_000 / self.rate }
}

/// One open-loop connection's schedule: asked what to do whenever it is idle (connected, or an
/// answer just ended), it says send now (on time or late), wait for the due time, or stop.
public struct OpenLoopConnection: Sendable, Equatable {
    public enum Action: Sendable, Equatable {
        /// Send request `sequence`; its latency runs from `due` (ns after the start).
        case send(sequence: Int, due: Int64)
        /// Nothing is due yet: be idle again at `until`.
        case wait(until: Int64)
        /// The next request would be due at or after the end of sending.
        case finished
    }

    public let schedule: OpenLoopSchedule
    public let connection: Int
    /// Requests due at or after this offset are not sent.
    public let endOffset: Int64
    public private(set) var nextSequence = 0

    public init(schedule: OpenLoopSchedule, connection: Int, endOffset: Int64) {
        self.schedule = schedule
        self.connection = connection
        self.endOffset = endOffset
    }

    /// The connection has nothing in flight at `now` (ns after the start).
    public mutating func idle(now: Int64) -> Action {
        let due = self.schedule.dueOffset(connection: self.connection, sequence: self.nextSequence)
        if due >= self.endOffset { return .finished }
        if due > now { return .wait(until: due) }
        defer { self.nextSequence += 1 }
        return .send(sequence: self.nextSequence, due: due)
    }

    /// Requests due before the end that have not been sent yet (they are late when > 0 at the end).
    public func unsent(now: Int64) -> Int {
        var count = 0
        var sequence = self.nextSequence
        while true {
            let due = self.schedule.dueOffset(connection: self.connection, sequence: sequence)
            if due >= self.endOffset || due > now { return count }
            count += 1
            sequence += 1
        }
    }
}
