import NIOCore
import NIOEmbedded
import Testing

@testable import SubgateProxy

/// `MovingDeadline`: the connection timers re-armed per request without a task per request.
@Suite("MovingDeadline")
struct MovingDeadlineTests {
    /// A timer as the handlers use it: `fire` asks `fired(now:)` and counts the real timeouts.
    final class Timed {
        let loop: EmbeddedEventLoop
        var deadline = MovingDeadline()
        var timeouts: [NIODeadline] = []

        init(loop: EmbeddedEventLoop) { self.loop = loop }

        func set(in delay: TimeAmount) {
            self.deadline.set(self.loop.now + delay, on: self.loop) { [weak self] in self?.fire() }
        }

        func fire() {
            if self.deadline.fired(now: self.loop.now, on: self.loop, fire: { [weak self] in self?.fire() }) {
                self.timeouts.append(self.loop.now)
            }
        }
    }

    @Test("a deadline moved later times out at the new deadline, not at the first one")
    func movedLater() {
        let loop = EmbeddedEventLoop()
        let timed = Timed(loop: loop)
        let start = loop.now
        timed.set(in: .seconds(10))
        loop.advanceTime(by: .seconds(4))
        timed.set(in: .seconds(10))  // now due at start + 14 s
        loop.advanceTime(by: .seconds(9))
        #expect(timed.timeouts.isEmpty, "the first task fired at 10 s, before the moved deadline, and did not time out")
        loop.advanceTime(by: .seconds(1))
        #expect(timed.timeouts == [start + .seconds(14)], "timed out exactly at the moved deadline: \(timed.timeouts)")
    }

    @Test("a deadline moved earlier times out at the earlier one")
    func movedEarlier() {
        let loop = EmbeddedEventLoop()
        let timed = Timed(loop: loop)
        let start = loop.now
        timed.set(in: .seconds(60))
        timed.set(in: .seconds(10))
        loop.advanceTime(by: .seconds(10))
        #expect(timed.timeouts == [start + .seconds(10)])
        loop.advanceTime(by: .seconds(60))
        #expect(timed.timeouts.count == 1, "the cancelled 60 s task never fires a second timeout")
    }

    @Test("a cleared deadline never times out; setting it again times out once")
    func clearedThenSet() {
        let loop = EmbeddedEventLoop()
        let timed = Timed(loop: loop)
        timed.set(in: .seconds(10))
        timed.deadline.clear()
        loop.advanceTime(by: .seconds(30))
        #expect(timed.timeouts.isEmpty, "cleared: nothing timed")
        timed.set(in: .seconds(5))
        loop.advanceTime(by: .seconds(5))
        #expect(timed.timeouts.count == 1)
        timed.deadline.cancel()
        timed.set(in: .seconds(5))
        timed.deadline.cancel()
        loop.advanceTime(by: .seconds(10))
        #expect(timed.timeouts.count == 1, "cancelled: its task is gone")
    }
}
