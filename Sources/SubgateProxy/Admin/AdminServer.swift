import NIOCore
import NIOHTTP1
import NIOPosix
import SubgateCore

/// The admin listener (SPEC §5): `/healthz`, `/readyz`, `/metrics`, `/status`.
///
/// Off the hot path, on the same event loops. With `admin_token` set, every path but
/// `/healthz` needs `Authorization: Bearer <admin_token>`.
public final class AdminServer: Sendable {
    /// What the admin endpoints read from the rest of the process.
    public struct Sources: Sendable {
        /// Renders `/metrics` in the Prometheus text format (the executable owns the registry).
        public var renderMetrics: @Sendable () -> String
        /// Extra `/status` fields as already-encoded JSON values, keyed by field name.
        public var statusFields: @Sendable () -> [(String, String)]
        /// `POST /flush`: reports pending usage now and answers with what was reported (JSON).
        public var flush: (@Sendable () async -> String)?

        public init(
            renderMetrics: @escaping @Sendable () -> String,
            statusFields: @escaping @Sendable () -> [(String, String)],
            flush: (@Sendable () async -> String)? = nil
        ) {
            self.renderMetrics = renderMetrics
            self.statusFields = statusFields
            self.flush = flush
        }
    }

    private let config: Config
    private let group: any EventLoopGroup
    private let readiness: Readiness
    private let sources: Sources
    private let started = ContinuousClock.now

    public init(config: Config, group: any EventLoopGroup, readiness: Readiness, sources: Sources) {
        self.config = config
        self.group = group
        self.readiness = readiness
        self.sources = sources
    }

    /// Binds `admin_listen` and returns the bound address.
    public func start() async throws -> (address: SocketAddress, channel: any Channel) {
        let routes = AdminRoutes(
            config: self.config,
            group: self.group,
            readiness: self.readiness,
            sources: self.sources,
            started: self.started
        )
        let channel = try await ServerBootstrap(group: self.group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(AdminHandler(routes: routes))
                }
            }
            .bind(host: self.config.adminListen.host, port: self.config.adminListen.port)
            .get()
        guard let address = channel.localAddress else { throw ChannelError.unknownLocalAddress }
        return (address, channel)
    }
}

/// An admin answer.
struct AdminResponse: Sendable {
    var status: HTTPResponseStatus
    var contentType: String
    var body: String

    static func json(_ status: HTTPResponseStatus, _ body: String) -> AdminResponse {
        AdminResponse(status: status, contentType: "application/json", body: body)
    }
}

/// The admin routing decisions, separate from the channel handler so tests can call them.
struct AdminRoutes: Sendable {
    let config: Config
    let group: any EventLoopGroup
    let readiness: Readiness
    let sources: AdminServer.Sources
    let started: ContinuousClock.Instant

    func respond(method: HTTPMethod, path: Substring, authorization: String?, on loop: any EventLoop) -> EventLoopFuture<AdminResponse> {
        if path == "/healthz" {
            return loop.makeSucceededFuture(.json(.ok, #"{"status":"ok"}"#))
        }
        if let token = self.config.adminToken {
            guard let authorization, Self.bearerMatches(authorization, token.value) else {
                return loop.makeSucceededFuture(
                    .json(.unauthorized, ProxyRejection(status: .unauthorized, code: "UNAUTHORIZED", message: "This admin path needs 'Authorization: Bearer <admin_token>'.").jsonBody)
                )
            }
        }
        switch (method, path) {
        case (.GET, "/readyz"):
            return self.readyz(on: loop)
        case (.GET, "/metrics"):
            return loop.makeSucceededFuture(
                AdminResponse(status: .ok, contentType: "text/plain; version=0.0.4; charset=utf-8", body: self.sources.renderMetrics())
            )
        case (.GET, "/status"):
            return loop.makeSucceededFuture(.json(.ok, self.status()))
        case (.POST, "/flush"):
            guard let flush = self.sources.flush else { break }
            return loop.makeFutureWithTask { AdminResponse.json(.ok, await flush()) }
        default:
            break
        }
        return loop.makeSucceededFuture(
            .json(.notFound, ProxyRejection(status: .notFound, code: "NOT_FOUND", message: "Admin paths: GET /healthz, /readyz, /metrics, /status; POST /flush.").jsonBody)
        )
    }

    /// Ready when listening, not draining, no recorded problem, and the upstream accepts a TCP connection.
    func readyz(on loop: any EventLoop) -> EventLoopFuture<AdminResponse> {
        let reasons = self.readiness.notReadyReasons() ?? []
        let upstream = self.config.upstream
        return ClientBootstrap(group: loop)
            .connectTimeout(.seconds(1))
            .connect(host: upstream.host, port: upstream.port)
            .flatMap { channel in channel.close().map { true } }
            .recover { _ in false }
            .map { upstreamUp in
                var all = reasons
                if !upstreamUp { all.append("the upstream \(upstream) does not accept connections") }
                if all.isEmpty { return .json(.ok, #"{"status":"ready"}"#) }
                let list = all.map(JSONString.quote).joined(separator: ",")
                return .json(.serviceUnavailable, #"{"status":"not_ready","reasons":[\#(list)]}"#)
            }
    }

    func status() -> String {
        var fields: [(String, String)] = [
            ("version", JSONString.quote(SubgateVersion.string)),
            ("uptime_seconds", String((ContinuousClock.now - self.started).components.seconds)),
            ("ready", self.readiness.notReadyReasons() == nil ? "true" : "false"),
            ("draining", self.readiness.isDraining ? "true" : "false"),
            ("upstream", JSONString.quote(self.config.upstream.description)),
            ("backend", JSONString.quote(self.config.backend.rawValue)),
            ("enforce", JSONString.quote(self.config.enforce.rawValue)),
        ]
        // Each name once: a JSON object with a repeated key means whatever its reader decides.
        for field in self.sources.statusFields() where !fields.contains(where: { $0.0 == field.0 }) {
            fields.append(field)
        }
        return "{" + fields.map { "\(JSONString.quote($0.0)):\($0.1)" }.joined(separator: ",") + "}"
    }

    /// Constant-time comparison of `Bearer <token>`, so the admin token cannot be guessed byte by byte.
    static func bearerMatches(_ header: String, _ token: String) -> Bool {
        let prefix = "Bearer "
        guard header.hasPrefix(prefix) else { return false }
        return Secret(token).matches(header.utf8.dropFirst(prefix.utf8.count))
    }
}

/// Thin channel shell around `AdminRoutes`.
final class AdminHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let routes: AdminRoutes
    private var head: HTTPRequestHead?

    init(routes: AdminRoutes) { self.routes = routes }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch Self.unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
        case .body:
            break
        case .end:
            guard let head = self.head else { return }
            self.head = nil
            let path = head.uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
            let keepAlive = head.isKeepAlive
            self.routes.respond(
                method: head.method,
                path: path,
                authorization: head.headers.first(name: "authorization"),
                on: context.eventLoop
            ).assumeIsolated().whenSuccess { response in
                var headers = HTTPHeaders()
                let body = context.channel.allocator.buffer(string: response.body)
                headers.add(name: "content-type", value: response.contentType)
                headers.add(name: "content-length", value: String(body.readableBytes))
                if !keepAlive { headers.add(name: "connection", value: "close") }
                context.write(Self.wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: response.status, headers: headers))), promise: nil)
                context.write(Self.wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
                context.writeAndFlush(Self.wrapOutboundOut(.end(nil))).assumeIsolated().whenComplete { _ in
                    if !keepAlive { context.close(promise: nil) }
                }
            }
        }
    }
}
