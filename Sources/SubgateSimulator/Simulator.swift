import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix

/// The simulated Crochet control plane on a real socket (SPEC §7; seed 000): the token
/// endpoints under `/api/v1`, the admin API under `/_sim`, and this Swift API for tests
/// in the same process. docs/simulator.md describes both APIs and the choices made.
///
/// All state is one `CrochetStore` behind one lock; the wall clock is read per call.
public final class Simulator: Sendable {
    private let core: SimulatorCore
    private let channel: any Channel
    private let host: String

    /// The bound port (the OS's choice when started with port 0).
    public let port: Int

    private init(core: SimulatorCore, channel: any Channel, host: String, port: Int) {
        self.core = core
        self.channel = channel
        self.host = host
        self.port = port
    }

    /// Binds `host:port` (0: any free port) and starts serving on `group`.
    /// `ratePerMinute` (> 0) is the budget of verify and of usage, each, per seller key.
    public static func start(
        host: String = "127.0.0.1",
        port: Int = 0,
        ratePerMinute: Int = 300,
        group: any EventLoopGroup
    ) async throws -> Simulator {
        precondition(ratePerMinute > 0, "ratePerMinute must be at least 1")
        let core = SimulatorCore(store: CrochetStore(ratePerMinute: ratePerMinute, now: Date()))
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    guard core.register(channel) else { throw ChannelError.ioOnClosedChannel }
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(SimulatorHandler(core: core))
                }
            }
            .bind(host: host, port: port)
            .get()
        guard let bound = channel.localAddress?.port else {
            try? await channel.close()
            throw ChannelError.unknownLocalAddress
        }
        return Simulator(core: core, channel: channel, host: host, port: bound)
    }

    /// `http://HOST:PORT`: the admin API is under `/_sim` here.
    public var rootURL: String {
        let reachable: String
        switch self.host {
        case "0.0.0.0", "": reachable = "127.0.0.1"
        case "::": reachable = "::1"
        default: reachable = self.host
        }
        return reachable.contains(":") ? "http://[\(reachable)]:\(self.port)" : "http://\(reachable):\(self.port)"
    }

    /// `http://HOST:PORT/api/v1`: what Subgate's `control_plane_url` points at.
    public var baseURL: String { self.rootURL + "/api/v1" }

    /// Closes the listener and every open connection.
    public func stop() async {
        let connections = self.core.stopAccepting()
        try? await self.channel.close()
        for connection in connections {
            try? await connection.close()
        }
    }

    // MARK: - Tokens

    /// Creates a token (registering its seller key) and returns the raw token, shown only
    /// here, and its hash. The state is stored as given: an `active` token may be created
    /// with nothing remaining.
    public func createToken(
        sellerKey: String = "am_k_demo",
        usageLimit: Int? = 100,
        usageCount: Int = 0,
        expiresAt: Date? = nil,
        status: String = "active",
        listingID: String = "lst_demo",
        subscriberID: String = "usr_demo"
    ) -> (token: String, hash: String) {
        self.core.withStore { store, _ in
            store.createToken(
                sellerKey: sellerKey,
                listingID: listingID,
                subscriberID: subscriberID,
                usageLimit: usageLimit,
                usageCount: usageCount,
                expiresAt: expiresAt,
                status: status
            )
        }
    }

    /// The token's state now (date expiry applied); nil when unknown.
    public func tokenState(hash: String) -> SimulatedToken? {
        self.core.withStore { store, now in store.token(hash: hash, now: now) }
    }

    /// Marks the token revoked, as a rotation does.
    public func revoke(hash: String) {
        self.core.withStore { store, _ in _ = store.revoke(hash: hash) }
    }

    /// Rotates as the buyer would (without using the rotate budget): the old token is
    /// revoked; the new raw token, or nil when the hash is unknown or already revoked.
    public func rotate(hash: String) -> String? {
        self.core.withStore { store, now in store.rotate(hash: hash, now: now)?.token }
    }

    // MARK: - What was reported and called

    /// Units accepted (answered 200) for this hash.
    public func acceptedUnits(hash: String) -> Int {
        self.core.withStore { store, _ in store.acceptedUnits[hash] ?? 0 }
    }

    /// Units accepted for every hash together.
    public var totalAcceptedUnits: Int {
        self.core.withStore { store, _ in store.totalAcceptedUnits }
    }

    /// Calls that reached `endpoint`, rejected and faulted ones included.
    public func callCount(_ endpoint: SimulatedEndpoint) -> Int {
        self.core.withStore { store, _ in store.callLog(endpoint).total }
    }

    /// The most calls to `endpoint` in any 60-second sliding window.
    public func maxCallsPerMinute(_ endpoint: SimulatedEndpoint) -> Int {
        self.core.withStore { store, _ in store.callLog(endpoint).maxPerMinute }
    }

    /// Every `tokens/usage` call in arrival order, with the status answered (0: dropped).
    public var usageReports: [SimulatedUsageReport] {
        self.core.withStore { store, _ in store.usageReports }
    }

    // MARK: - Faults

    /// Adds a fault after those already injected (the first matching one applies).
    public func injectFault(_ fault: SimulatedFault) {
        self.core.withStore { store, _ in store.injectFault(fault) }
    }

    public func clearFaults() {
        self.core.withStore { store, _ in _ = store.clearFaults() }
    }

    /// Back to a fresh start: no tokens, reports, statistics or faults.
    public func reset() {
        self.core.withStore { store, now in store.reset(now: now) }
    }
}
