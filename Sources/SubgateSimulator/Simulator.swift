import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix

/// The simulated control planes on a real socket (SPEC §7): the Crochet token endpoints
/// and the pay-per-call gateway under `/api/v1`, Crovver's credits under `/api/public`, the
/// admin API under `/_sim`, and this Swift API for tests in the same process.
/// docs/simulator.md describes all of them and the choices made.
///
/// All state is one `SimulatorStore` behind one lock; the wall clock is read per call.
public final class Simulator: Sendable {
    private let core: SimulatorCore
    private let forwarder: GatewayForwarder
    private let channel: any Channel
    private let host: String

    /// The bound port (the OS's choice when started with port 0).
    public let port: Int

    private init(core: SimulatorCore, forwarder: GatewayForwarder, channel: any Channel, host: String, port: Int) {
        self.core = core
        self.forwarder = forwarder
        self.channel = channel
        self.host = host
        self.port = port
    }

    /// Binds `host:port` (0: any free port) and starts serving on `group`.
    /// `ratePerMinute` (> 0) is the budget of verify and of usage, each, per seller key.
    /// `forwardTimeout` bounds the gateway's call to a seller's endpoint.
    public static func start(
        host: String = "127.0.0.1",
        port: Int = 0,
        ratePerMinute: Int = 300,
        forwardTimeout: Duration = .seconds(30),
        group: any EventLoopGroup
    ) async throws -> Simulator {
        precondition(ratePerMinute > 0, "ratePerMinute must be at least 1")
        let core = SimulatorCore(store: SimulatorStore(ratePerMinute: ratePerMinute, now: Date()))
        let forwarder = GatewayForwarder(group: group, timeout: TimeAmount(forwardTimeout))
        let channel: any Channel
        do {
            channel = try await ServerBootstrap(group: group)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .childChannelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        guard core.register(channel) else { throw ChannelError.ioOnClosedChannel }
                        try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                        try channel.pipeline.syncOperations.addHandler(SimulatorHandler(core: core, forwarder: forwarder))
                    }
                }
                .bind(host: host, port: port)
                .get()
        } catch {
            await forwarder.shutdown()
            throw error
        }
        guard let bound = channel.localAddress?.port else {
            try? await channel.close()
            await forwarder.shutdown()
            throw ChannelError.unknownLocalAddress
        }
        return Simulator(core: core, forwarder: forwarder, channel: channel, host: host, port: bound)
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

    /// `http://HOST:PORT/api/v1`: what Subgate's `control_plane_url` points at; the gateway
    /// is `baseURL + "/gateway/<listing id>"`.
    public var baseURL: String { self.rootURL + "/api/v1" }

    /// `http://HOST:PORT/api/public`: what Subgate's `crovver_url` points at.
    public var crovverURL: String { self.rootURL + "/api/public" }

    /// Closes the listener and every open connection.
    public func stop() async {
        let connections = self.core.stopAccepting()
        try? await self.channel.close()
        for connection in connections {
            try? await connection.close()
        }
        await self.forwarder.shutdown()
    }

    // MARK: - Sellers and tokens (seed 000)

    /// Adds a seller: its `am_k_…` key (accepted by the API from now on) and the gateway
    /// secret its listings' calls carry. False when the key or the id is taken.
    @discardableResult
    public func createSeller(_ seller: SimulatedSeller) -> Bool {
        self.core.withStore { store, _ in
            do {
                try store.crochet.createSeller(seller)
                return true
            } catch {
                return false
            }
        }
    }

    /// The seller with this key, if any.
    public func seller(key: String) -> SimulatedSeller? {
        self.core.withStore { store, _ in store.crochet.seller(key: key) }
    }

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
            store.crochet.createToken(
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
        self.core.withStore { store, now in store.crochet.token(hash: hash, now: now) }
    }

    /// Marks the token revoked, as a rotation does.
    public func revoke(hash: String) {
        self.core.withStore { store, _ in _ = store.crochet.revoke(hash: hash) }
    }

    /// Rotates as the buyer would (without using the rotate budget): the old token is
    /// revoked; the new raw token, or nil when the hash is unknown or already revoked.
    public func rotate(hash: String) -> String? {
        self.core.withStore { store, now in store.crochet.rotate(hash: hash, now: now)?.token }
    }

    // MARK: - What was reported and called

    /// Units accepted (answered 200) for this hash.
    public func acceptedUnits(hash: String) -> Int {
        self.core.withStore { store, _ in store.crochet.acceptedUnits[hash] ?? 0 }
    }

    /// Units accepted for every hash together.
    public var totalAcceptedUnits: Int {
        self.core.withStore { store, _ in store.crochet.totalAcceptedUnits }
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
        self.core.withStore { store, _ in store.crochet.usageReports }
    }

    // MARK: - Crovver (seed 002)

    /// Accepts `key` from now on, as `Authorization: Bearer sk_…` (when it starts with
    /// `sk_`) or as `x-service-key`. `sk_test_demo` is always accepted.
    public func addCrovverKey(_ key: String) {
        self.core.withStore { store, _ in store.crovver.addKey(key) }
    }

    /// Adds a tenant with its plan's pools (base credits and add-ons). False when the
    /// tenant exists, two pools share a key, or credits are negative.
    @discardableResult
    public func createTenant(_ tenant: SimulatedTenant) -> Bool {
        self.core.withStore { store, _ in
            do {
                try store.crovver.createTenant(tenant)
                return true
            } catch {
                return false
            }
        }
    }

    /// Adds an add-on grant to a tenant's pool; its grant id (`addon_N`), or nil when the
    /// tenant or pool is unknown or the credits negative.
    @discardableResult
    public func addAddon(tenantID: String, poolKey: String, credits: Int, expiresAt: Date? = nil) -> String? {
        self.core.withStore { store, _ in
            try? store.crovver.addAddon(tenantID: tenantID, poolKey: poolKey, credits: credits, expiresAt: expiresAt)
        }
    }

    /// The tenant with its pools as they stand; nil when unknown.
    public func tenant(_ tenantID: String) -> SimulatedTenant? {
        self.core.withStore { store, _ in store.crovver.tenants[tenantID] }
    }

    /// The pool's balance now (below zero for an overdrawn soft-limit pool); nil when the
    /// tenant or pool is unknown.
    public func credits(tenantID: String, poolKey: String) -> Int? {
        self.core.withStore { store, now in store.crovver.balance(tenantID: tenantID, poolKey: poolKey, now: now) }
    }

    /// The tenant's processed `credits/consume` calls, in order (repeats of a key are
    /// counted in its event's `replays`).
    public func consumeEvents(tenantID: String) -> [SimulatedConsumeEvent] {
        self.core.withStore { store, _ in store.crovver.events(tenantID: tenantID) }
    }

    // MARK: - The gateway (seed 001)

    /// Adds a gateway listing for a known seller (`sellerID`), an `http(s)://` endpoint and
    /// a price above zero. False otherwise, or when the listing id is taken.
    @discardableResult
    public func createListing(_ listing: SimulatedListing) -> Bool {
        self.core.withStore { store, _ in
            do {
                try store.gateway.createListing(listing, sellers: store.crochet)
                return true
            } catch {
                return false
            }
        }
    }

    /// The mock provider settles the payment of a relay request (named by its relay request
    /// id or payment id); its state, or nil when unknown.
    @discardableResult
    public func settlePayment(_ id: String) -> SimulatedRelayRequest? {
        self.core.withStore { store, now in store.gateway.settle(id, now: now) }
    }

    /// A relay request's state; nil when unknown.
    public func relayRequest(_ relayRequestID: String) -> SimulatedRelayRequest? {
        self.core.withStore { store, _ in store.gateway.relays[relayRequestID] }
    }

    /// Every ledger entry, in the order written.
    public var ledger: [SimulatedLedgerEntry] {
        self.core.withStore { store, _ in store.gateway.ledger }
    }

    // MARK: - Fixtures

    /// Creates what a seed file describes (`subgate simulate --seed FILE`), relative times
    /// counted from now; the raw tokens by their names in the file, in file order. Throws,
    /// creating nothing, when a seller, listing, raw token or tenant of the seed exists.
    @discardableResult
    public func apply(_ seed: SimulatorSeed) throws(SimulatorSeedConflict) -> [(name: String, token: String)] {
        let result: Result<[(name: String, token: String)], SimulatorSeedConflict> = self.core.withStore { store, now in
            do throws(SimulatorSeedConflict) {
                return .success(try store.apply(seed, now: now))
            } catch {
                return .failure(error)
            }
        }
        return try result.get()
    }

    // MARK: - Faults

    /// Adds a fault after those already injected (the first matching one applies).
    public func injectFault(_ fault: SimulatedFault) {
        self.core.withStore { store, _ in store.injectFault(fault) }
    }

    public func clearFaults() {
        self.core.withStore { store, _ in _ = store.clearFaults() }
    }

    /// Back to a fresh start: no tokens, tenants, listings, reports, statistics or faults.
    public func reset() {
        self.core.withStore { store, now in store.reset(now: now) }
    }
}
