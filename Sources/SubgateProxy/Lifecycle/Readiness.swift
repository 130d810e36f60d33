import NIOConcurrencyHelpers

/// What `/readyz` reports (SPEC §5): listening, not draining, and nothing else that makes
/// this instance unfit for traffic. Later pieces (seller key rejected, journal unwritable)
/// add their reasons through `setProblem`.
public final class Readiness: Sendable {
    private struct State {
        var listening = false
        var draining = false
        /// When the drain began (the signal): `shutdown_grace` counts from here.
        var drainingSince: ContinuousClock.Instant?
        var problems: [String: String] = [:]
    }

    private let state = NIOLockedValueBox(State())

    public init() {}

    public func setListening(_ value: Bool) { self.state.withLockedValue { $0.listening = value } }

    /// SIGTERM: `/readyz` turns 503 at once.
    public func startDraining() {
        self.state.withLockedValue { state in
            if !state.draining { state.drainingSince = .now }
            state.draining = true
        }
    }

    public var isDraining: Bool { self.state.withLockedValue { $0.draining } }

    /// When `startDraining` was first called; `nil` while serving.
    public var drainingSince: ContinuousClock.Instant? { self.state.withLockedValue { $0.drainingSince } }

    /// Records (or, with `nil`, clears) a named reason this instance is not ready; returns the
    /// reason recorded before, so a caller can log a problem once, when it appears.
    @discardableResult
    public func setProblem(_ name: String, _ reason: String?) -> String? {
        self.state.withLockedValue { state in
            let previous = state.problems[name]
            state.problems[name] = reason
            return previous
        }
    }

    /// `nil` when ready, else the reasons.
    public func notReadyReasons() -> [String]? {
        self.state.withLockedValue { state in
            var reasons: [String] = []
            if !state.listening { reasons.append("the proxy listener is not open") }
            if state.draining { reasons.append("shutting down") }
            reasons.append(contentsOf: state.problems.keys.sorted().compactMap { state.problems[$0] })
            return reasons.isEmpty ? nil : reasons
        }
    }
}
