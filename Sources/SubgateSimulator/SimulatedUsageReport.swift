/// One call to `tokens/usage` as the simulator answered it, in arrival order.
public struct SimulatedUsageReport: Sendable, Equatable {
    /// The body's `token_hash`; empty when it had none that was a string.
    public var tokenHash: String
    /// The body's `count`; 0 when it had none that was an integer.
    public var count: Int
    /// The HTTP status answered; 0 when an injected fault dropped the connection unanswered.
    public var status: Int

    public init(tokenHash: String, count: Int, status: Int) {
        self.tokenHash = tokenHash
        self.count = count
        self.status = status
    }
}
