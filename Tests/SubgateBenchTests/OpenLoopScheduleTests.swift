import Testing

@testable import SubgateBenchCore

/// Issue 5: "Open loop: fixed request rate, latency corrected for coordinated omission
/// (measure from the intended send time)."
@Suite("Open-loop schedule")
struct OpenLoopScheduleTests {
    @Test("the connections' due times interleave into one sequence at exactly the rate")
    func interleaving() {
        let schedule = OpenLoopSchedule(rate: 1000, connections: 4)
        var due: [Int64] = []
        for connection in 0..<4 {
            for sequence in 0..<25 { due.append(schedule.dueOffset(connection: connection, sequence: sequence)) }
        }
        #expect(due.sorted() == (0..<100).map { Int64($0) * 1_000_000 })
        #expect(schedule.connectionInterval == 4_000_000)
    }

    @Test("an idle connection sends on time, waits for its next due time, and stops at the end")
    func connectionActions() {
        var connection = OpenLoopConnection(schedule: OpenLoopSchedule(rate: 100, connections: 2), connection: 1, endOffset: 50_000_000)
        // Connection 1 of 2 at 100/s: due at 10 ms, 30 ms, 50 ms (the end), …
        #expect(connection.idle(now: 0) == .wait(until: 10_000_000))
        #expect(connection.idle(now: 10_000_000) == .send(sequence: 0, due: 10_000_000))
        #expect(connection.idle(now: 12_000_000) == .wait(until: 30_000_000))
        #expect(connection.idle(now: 31_000_000) == .send(sequence: 1, due: 30_000_000))
        #expect(connection.idle(now: 40_000_000) == .finished)
    }

    @Test("late answers: the next request goes at once but keeps its due time; unsent ones are counted")
    func lateness() {
        var connection = OpenLoopConnection(schedule: OpenLoopSchedule(rate: 1000, connections: 1), connection: 0, endOffset: 10_000_000)
        #expect(connection.idle(now: 0) == .send(sequence: 0, due: 0))
        // The answer took 5.5 ms: requests due at 1…5 ms are late.
        #expect(connection.unsent(now: 5_500_000) == 5)
        #expect(connection.idle(now: 5_500_000) == .send(sequence: 1, due: 1_000_000))
        #expect(connection.idle(now: 5_600_000) == .send(sequence: 2, due: 2_000_000))
    }

    /// A target that answers in 1 ms but stalls once for 100 ms, driven at 1000 req/s over one
    /// connection for 1 s. A closed loop sees one slow request; measured from the due times,
    /// every request queued behind the stall is slow too — what a user would have seen.
    @Test("a 100 ms stall shows as ~100 slow requests, not one (coordinated omission corrected)")
    func coordinatedOmission() {
        let service: Int64 = 1_000_000
        var connection = OpenLoopConnection(schedule: OpenLoopSchedule(rate: 1000, connections: 1), connection: 0, endOffset: 1_000_000_000)
        var now: Int64 = 0
        var corrected: [Int64] = []
        var uncorrected: [Int64] = []
        var stalled = false
        loop: while true {
            switch connection.idle(now: now) {
            case .finished:
                break loop
            case .wait(let until):
                now = until
            case .send(_, let due):
                let sentAt = now
                var took = service / 2
                if !stalled && sentAt >= 500_000_000 {
                    stalled = true
                    took = 100_000_000
                }
                now += took
                corrected.append(now - due)
                uncorrected.append(now - sentAt)
            }
        }
        #expect(corrected.count == 1000)
        let slowCorrected = corrected.filter { $0 > 10_000_000 }.count
        let slowUncorrected = uncorrected.filter { $0 > 10_000_000 }.count
        #expect(slowUncorrected == 1)
        #expect(slowCorrected >= 90, "\(slowCorrected) requests over 10 ms")
        #expect(corrected.max() ?? 0 >= 100_000_000)
    }
}
