import Logging
import NIOCore
import NIOHTTP1
import SubgateCore

/// Serves one client connection: every request on it goes through the named phases
/// read head → check head → token, verdict, admit (`Enforcer`) → forward → stream answer
/// → settle → log. The log phase runs on every path, including aborts.
///
/// It sits behind NIO's `HTTPServerPipelineHandler`, which delivers one request at a time
/// (pipelined requests wait, and reads stop, until the answer is complete) and handles
/// quiescing on shutdown. Everything here runs on the connection's event loop; the upstream
/// connection is borrowed from that loop's pool, so no lock or thread hop is on the path.
final class ProxyHandler: ChannelDuplexHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    /// The life of the connection between and during exchanges.
    private enum State {
        /// Waiting for the next request head.
        case idle
        /// A request is being relayed.
        case exchange(Exchange)
        /// Subgate answered before the request ended; the rest of the request is read and dropped.
        case discardingBody(closeAfter: Bool, discarded: Int)
        /// The output side is closed; input is drained until EOF so the answer is not lost to a reset.
        case lingering
        /// The channel is gone.
        case closed
    }

    private let shared: ProxyContext
    private let pool: UpstreamConnectionPool
    private let timeouts: ConnectionTimeoutHandler
    private var state: State = .idle
    private var context: ChannelHandlerContext?
    private var clientAddress: String?
    /// Client reads are held while the upstream cannot take more request body.
    private var readsPaused = false
    private var readPending = false
    /// Request parts were written upstream during this read batch and await one flush.
    private var upstreamNeedsFlush = false
    /// Answer parts were written to the client during this upstream read batch and await one flush.
    private var clientNeedsFlush = false
    /// The client half-closed its side: the connection ends after the current answer.
    private var clientInputClosed = false
    /// Closing, and nothing more on the input is worth reading (its end, or bytes that are not
    /// HTTP): the connection closes as soon as its output is.
    private var closingInputDone = false
    /// `closeGracefully` has shut the output (everything written before it went out).
    private var outputClosed = false
    /// The write of the last answer's end: done once it has gone out to the socket.
    private var lastEnd: EventLoopFuture<Void>?
    /// `upstream_timeout` of the exchange waiting for its answer head.
    private var upstreamDeadline = MovingDeadline()

    /// How much request body a rejected request may still send before the connection is closed.
    private static let maxDiscardBytes = 1024 * 1024
    /// How long a closing connection drains its input after its last answer.
    private static let lingerTime = TimeAmount.seconds(2)

    init(shared: ProxyContext, pool: UpstreamConnectionPool, timeouts: ConnectionTimeoutHandler) {
        self.shared = shared
        self.pool = pool
        self.timeouts = timeouts
    }
}

// MARK: - Per-request state

/// One request and its answer. A class so the handler mutates it in place.
final class Exchange {
    let method: HTTPMethod
    /// The path without the query string, for the access log (queries may carry secrets).
    let logPath: Substring
    let clientVersion: HTTPVersion
    var upstreamHead: HTTPRequestHead
    let requestID: String
    let started: NIODeadline
    let framing: RequestFraming

    /// The client asked to close after this answer (or spoke HTTP/1.0 without keep-alive).
    var closeAfter: Bool
    var upstream: UpstreamHandler?
    /// The upstream connection came from the pool (so it may have gone stale while idle).
    var reusedConnection = false
    var retried = false
    /// Request body parts read while no upstream connection was ready yet.
    var pending: [HTTPClientRequestPart] = []
    var requestEnded = false
    var requestBodyBytes = 0
    /// At least one request-body byte went upstream: the request can no longer be replayed.
    var bodySentUpstream = false
    var upstreamSent: NIODeadline?
    /// The upstream's answer head (final, non-1xx) arrived.
    var responseHeadReceived = false
    /// The upstream wants to keep its connection (no `Connection: close`, HTTP/1.1).
    var upstreamKeepAlive = false
    /// A head (ours or the upstream's) went to the client.
    var responseHeadSent = false
    /// Subgate answered the client's `Expect: 100-continue` with its own 100.
    var continueSent = false
    var responseEnded = false
    var status: UInt = 0
    var responseBodyBytes = 0
    var outcome = "forwarded"
    /// The token's hash, when the request carried one.
    var tokenHash: String?
    /// The unit reserved at admission; settled (billed or released) exactly once.
    var ticket: Enforcer.Ticket?
    /// Units this answer bills when billable: the upstream's `x-subgate-usage`, else 1.
    var billedUnits = 1
    /// A call relayed by the Crochet gateway (SPEC §6); it carries no token and bills nothing.
    var relay: RelayExchange?

    /// `POST /v1/run`: what a repeat of a relay id must ask again to be replayed.
    var relayRequestLine: String { "\(self.method.rawValue) \(self.upstreamHead.uri)" }

    init(
        head: HTTPRequestHead,
        upstreamHead: HTTPRequestHead,
        requestID: String,
        framing: RequestFraming,
        started: NIODeadline
    ) {
        self.method = head.method
        self.logPath = head.uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
        self.clientVersion = head.version
        self.upstreamHead = upstreamHead
        self.requestID = requestID
        self.framing = framing
        self.started = started
        self.closeAfter = !head.isKeepAlive
    }
}

/// A gateway-relayed call in flight: its relay id, the running hash of its body, and either
/// the answer being captured (the first call with this id) or the record to replay.
final class RelayExchange {
    enum Mode {
        case forwarding
        case replaying(RelayRecord)
    }

    let id: String
    let mode: Mode
    var digest = BodyDigest()
    /// The upstream's answer as the client got it (forwarding); nil until its head arrived.
    var answer: RelayAnswer?
    /// The answer outgrew `relay_max_answer_bytes`: it is recorded as not replayable.
    var answerTooLarge = false
    /// `complete` or `abandon` was called.
    var settled = false

    init(id: String, mode: Mode) {
        self.id = id
        self.mode = mode
    }

    var isReplaying: Bool {
        if case .replaying = self.mode { return true }
        return false
    }
}

// MARK: - Client events

extension ProxyHandler {
    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        self.clientAddress = context.channel.remoteAddress?.ipAddress
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.upstreamDeadline.cancel()
        self.context = nil
    }

    func channelActive(context: ChannelHandlerContext) {
        self.clientAddress = context.channel.remoteAddress?.ipAddress
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch Self.unwrapInboundIn(data) {
        case .head(let head):
            self.requestHead(head, context: context)
        case .body(let buffer):
            self.requestBody(buffer, context: context)
        case .end(let trailers):
            self.requestEnd(trailers, context: context)
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        if self.upstreamNeedsFlush {
            self.upstreamNeedsFlush = false
            if case .exchange(let exchange) = self.state {
                exchange.upstream?.flush()
            }
        }
        context.fireChannelReadComplete()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        // The client is (not) keeping up with the answer: pause or resume upstream reads.
        if case .exchange(let exchange) = self.state, let upstream = exchange.upstream {
            if context.channel.isWritable {
                upstream.resumeReads()
            } else {
                upstream.pauseReads()
            }
        }
        context.fireChannelWritabilityChanged()
    }

    func channelInactive(context: ChannelHandlerContext) {
        if case .exchange(let exchange) = self.state {
            // The client went away mid-exchange: abort the upstream request too.
            self.abortUpstream(exchange)
            exchange.outcome = "client_aborted"
            self.settleAndLog(exchange)
        }
        self.state = .closed
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // The decoder reports a half-received head when the connection closes under it (after
        // the 408 of header_read_timeout, say). Nobody is left to answer: a 400 now would only
        // count and log a request that never was. An exchange in flight is settled by
        // `channelInactive`, which comes next.
        guard context.channel.isActive else { return }
        let rejection: ProxyRejection
        if let parserError = error as? HTTPParserError {
            rejection =
                parserError == .headerOverflow
                ? .headersTooLarge
                : .badRequest("The request is not valid HTTP/1.1 (\(parserError)).")
        } else {
            rejection = .badRequest("The request could not be read.")
        }
        switch self.state {
        case .idle:
            self.reject(rejection, version: .http1_1, requestEnded: true, context: context)
        case .exchange(let exchange):
            if exchange.responseHeadSent {
                self.abortUpstream(exchange)
                exchange.outcome = "client_aborted"
                self.settleAndLog(exchange)
                self.state = .closed
                context.close(promise: nil)
            } else {
                self.abortUpstream(exchange)
                self.respondWithRejection(exchange, rejection, context: context)
            }
        case .discardingBody:
            // The answer is already written; what follows on this connection no longer matters.
            self.closeGracefully(context: context)
        case .lingering:
            self.inputDoneWhileClosing(context: context)
        case .closed:
            break
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case ChannelEvent.inputClosed = event {
            self.clientInputClosed = true
            switch self.state {
            case .lingering:
                self.inputDoneWhileClosing(context: context)
            case .discardingBody, .idle:
                // A half-closed client will send nothing more. The last answer may have been
                // written just now (this event can arrive re-entrantly while its end is written,
                // see `enterStateAfterAnswer`) and not be flushed yet: close after it goes out.
                self.closingInputDone = true
                self.closeGracefully(context: context)
            case .exchange(let exchange):
                exchange.closeAfter = true
            case .closed:
                break
            }
        }
        context.fireUserInboundEventTriggered(event)
    }

    func read(context: ChannelHandlerContext) {
        if self.readsPaused {
            self.readPending = true
        } else {
            context.read()
        }
    }
}

// MARK: - Phases: head, body, end of the request

extension ProxyHandler {
    private func requestHead(_ head: HTTPRequestHead, context: ChannelHandlerContext) {
        self.timeouts.requestHeadReceived()
        switch self.state {
        case .idle:
            break
        case .lingering, .closed:
            // Pipelined after an answer that closes the connection (HTTPServerPipelineHandler
            // delivers it as soon as that answer's end is written): never served, never forwarded.
            return
        case .exchange, .discardingBody:
            // HTTPServerPipelineHandler delivers one request at a time; a head now is a bug.
            context.close(promise: nil)
            return
        }
        let now = NIODeadline.now()
        let framing: RequestFraming
        switch RequestHeadRules.check(head, maxBodyBytes: self.shared.config.maxBodyBytes) {
        case .failure(let rejection):
            let ended: Bool
            switch head.headers.first(name: "content-length").flatMap({ Int($0) }) {
            case .some(let n) where n > 0: ended = false
            default: ended = !head.headers.contains(name: "transfer-encoding")
            }
            self.reject(rejection, version: head.version, requestEnded: ended, context: context, started: now, method: head.method, uri: head.uri)
            return
        case .success(let checked):
            framing = checked
        }

        // The head passed the rules, so its framing is known: no body means it has ended.
        let ended: Bool
        switch framing.body {
        case .none, .contentLength(0): ended = true
        case .contentLength, .chunked: ended = false
        }

        // A call relayed by the Crochet gateway needs no token (SPEC §6).
        var relayID: String?
        if self.shared.relays != nil {
            switch GatewayRelay.classify(head.headers, secret: self.shared.config.gatewaySecret) {
            case .notRelayed:
                break
            case .relayed(let id):
                relayID = id
            case .reject where self.shared.config.enforce == .shadow:
                // Shadow mode serves every request: a bad relay header leaves the token to decide.
                break
            case .reject(let rejection):
                if rejection == .tokenInvalid {
                    self.shared.logger.warning(
                        "a relayed call's gateway secret is missing or wrong",
                        metadata: ["relay_id": .string(head.headers.first(name: GatewayRelay.relayIDHeader) ?? "-"), "client": .string(self.clientAddress ?? "-")]
                    )
                }
                self.reject(rejection, version: head.version, requestEnded: ended, context: context, started: now, method: head.method, uri: head.uri, clientKeepAlive: head.isKeepAlive)
                return
            }
        }

        var tokenHash: String?
        if relayID == nil, let enforcer = self.shared.enforcer {
            var rejection: ProxyRejection?
            if enforcer.crovver != nil {
                // `backend = crovver`: the tenant header's value is the key (SPEC §6).
                let header = self.shared.config.crovverTenantHeader
                switch TenantLookup.find(in: head.headers, name: header) {
                case .present(let tenant):
                    tokenHash = tenant
                case .missing:
                    rejection = .missingTenant(header: header)
                case .invalid:
                    rejection = .badTenant(header: header)
                }
            } else {
                switch TokenLookup.find(in: head.headers, name: self.shared.config.tokenHeader, prefix: self.shared.config.tokenPrefix) {
                case .present(let raw):
                    tokenHash = TokenHash.hex(raw)
                case .missing:
                    rejection = .missingToken
                case .duplicate:
                    rejection = .duplicateToken
                }
            }
            if let rejection {
                if enforcer.config.enforce == .on {
                    self.reject(rejection, version: head.version, requestEnded: ended, context: context, started: now, method: head.method, uri: head.uri, clientKeepAlive: head.isKeepAlive)
                    return
                }
                enforcer.countShadowRejection(rejection)
            }
        }

        let (headers, requestID) = HeaderRewrite.upstreamRequestHeaders(
            head.headers,
            framing: framing.body,
            context: HeaderRewrite.RequestContext(
                clientAddress: self.clientAddress,
                // The tenant header is no secret: the upstream gets it (`backend = crovver`).
                tokenHeaderToRemove: self.shared.config.forwardToken || self.shared.config.backend == .crovver ? nil : self.shared.config.tokenHeader,
                removeGatewaySecret: self.shared.relays != nil
            ),
            generateRequestID: RequestID.generate
        )
        let upstreamHead = HTTPRequestHead(version: .http1_1, method: head.method, uri: framing.target, headers: headers)
        let exchange = Exchange(head: head, upstreamHead: upstreamHead, requestID: requestID, framing: framing, started: now)
        exchange.closeAfter = exchange.closeAfter || self.clientInputClosed
        exchange.tokenHash = tokenHash
        self.state = .exchange(exchange)
        if let relayID, let relays = self.shared.relays {
            switch relays.admit(relayID) {
            case .forward:
                exchange.relay = RelayExchange(id: relayID, mode: .forwarding)
                self.startUpstream(exchange, context: context)
            case .inProgress:
                self.respondWithRejection(exchange, .relayInProgress, context: context, keepConnection: true)
            case .recorded(let record):
                // Decided once the body has been read and hashed (`requestEnd`); nothing goes
                // upstream. The body is asked for (100-continue) and must arrive within
                // upstream_timeout.
                exchange.relay = RelayExchange(id: relayID, mode: .replaying(record))
                if framing.expectsContinue && !ended {
                    exchange.continueSent = true
                    context.writeAndFlush(Self.wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .continue))), promise: nil)
                }
                self.upstreamDeadline.set(context.eventLoop.now + TimeAmount(self.shared.config.upstreamTimeout), on: context.eventLoop) { [weak self] in
                    self?.upstreamTimerFired()
                }
            }
            return
        }
        guard let enforcer = self.shared.enforcer, let hash = tokenHash else {
            self.startUpstream(exchange, context: context)
            return
        }
        // The path (without the query) and the request id go into Crovver's `metadata`.
        let endpoint = enforcer.crovver == nil ? "" : String(exchange.upstreamHead.uri.prefix { $0 != "?" })
        let crovverRequestID = enforcer.crovver == nil ? "" : exchange.requestID
        switch enforcer.admit(hash: hash, on: context.eventLoop, endpoint: endpoint, requestID: crovverRequestID) {
        case .allow(let ticket):
            self.admitted(exchange, ticket: ticket, hash: hash, context: context)
        case .reject(let rejection):
            self.respondWithRejection(exchange, rejection, context: context, keepConnection: true)
        case .wait(let verdict):
            // A miss: reads pause (parts already decoded queue in the exchange) until the one
            // verify for this hash ends, then the request is decided without waiting again.
            self.pauseClientReads()
            verdict.assumeIsolated().whenComplete { [weak self] result in
                guard let self, case .exchange(let current) = self.state, current === exchange, let context = self.context else { return }
                let outcome = (try? result.get()) ?? .failed(retryAfterSeconds: 1)
                switch enforcer.admitAfterVerify(hash: hash, result: outcome, endpoint: endpoint, requestID: crovverRequestID) {
                case .allow(let ticket):
                    self.admitted(exchange, ticket: ticket, hash: hash, context: context)
                case .reject(let rejection):
                    self.resumeClientReads()
                    self.respondWithRejection(exchange, rejection, context: context, keepConnection: true)
                case .wait:
                    preconditionFailure("admitAfterVerify never waits")
                }
            }
        }
    }

    /// The request is admitted with a reserved unit: tell the upstream who is calling, then forward.
    private func admitted(_ exchange: Exchange, ticket: Enforcer.Ticket, hash: String, context: ChannelHandlerContext) {
        exchange.ticket = ticket
        // In place: a copy of the block would be copied again on write.
        if let subscriber = ticket.subscriberID { exchange.upstreamHead.headers.add(name: "x-subgate-subscriber-id", value: subscriber) }
        if let listing = ticket.listingID { exchange.upstreamHead.headers.add(name: "x-subgate-listing-id", value: listing) }
        if let remaining = ticket.remaining { exchange.upstreamHead.headers.add(name: "x-subgate-remaining", value: String(remaining)) }
        if self.shared.config.backend == .crovver {
            // A soft-limit pool below zero: served, and the upstream is told (SPEC §6).
            if ticket.creditWarning { exchange.upstreamHead.headers.add(name: "x-subgate-credit-warning", value: "soft-limit") }
        } else {
            exchange.upstreamHead.headers.add(name: "x-subgate-token-hash", value: hash)
        }
        self.startUpstream(exchange, context: context)
    }

    private func requestBody(_ buffer: ByteBuffer, context: ChannelHandlerContext) {
        switch self.state {
        case .exchange(let exchange):
            exchange.requestBodyBytes += buffer.readableBytes
            if exchange.requestBodyBytes > self.shared.config.maxBodyBytes {
                self.bodyTooLarge(exchange, context: context)
                return
            }
            if let relay = exchange.relay {
                relay.digest.update(buffer)
                // A repeat is only hashed: it is answered from the record, or refused.
                if relay.isReplaying { return }
            }
            let part = HTTPClientRequestPart.body(.byteBuffer(buffer))
            if let upstream = exchange.upstream {
                upstream.write(part)
                exchange.bodySentUpstream = true
                self.upstreamNeedsFlush = true
                if !upstream.isWritable { self.pauseClientReads() }
            } else {
                exchange.pending.append(part)
            }
        case .discardingBody(let closeAfter, let discarded):
            let total = discarded + buffer.readableBytes
            if total > Self.maxDiscardBytes {
                self.closeGracefully(context: context)
            } else {
                self.state = .discardingBody(closeAfter: closeAfter, discarded: total)
            }
        case .idle, .lingering, .closed:
            break
        }
    }

    private func requestEnd(_ trailers: HTTPHeaders?, context: ChannelHandlerContext) {
        switch self.state {
        case .exchange(let exchange):
            exchange.requestEnded = true
            if let relay = exchange.relay, case .replaying(let record) = relay.mode {
                self.upstreamDeadline.clear()
                self.replay(exchange, record: record, bodyHash: relay.digest.hex(), context: context)
                return
            }
            let part = HTTPClientRequestPart.end(trailers)
            if let upstream = exchange.upstream {
                upstream.write(part)
                self.upstreamNeedsFlush = true
            } else {
                exchange.pending.append(part)
            }
            if exchange.responseEnded {
                // The upstream answered before the request ended (an early 413, say).
                self.finishExchange(exchange, context: context)
            }
        case .discardingBody(let closeAfter, _):
            if closeAfter {
                self.closeGracefully(context: context)
            } else {
                self.state = .idle
                self.timeouts.exchangeFinished()
            }
        case .idle, .lingering, .closed:
            break
        }
    }
}

// MARK: - Phase: forward

extension ProxyHandler {
    private func startUpstream(_ exchange: Exchange, context: ChannelHandlerContext) {
        switch self.pool.acquire() {
        case .ready(let connection):
            self.attach(exchange, to: connection, reused: true, context: context)
        case .connecting:
            // Hold client reads until the connection exists; parts already decoded are queued.
            self.pauseClientReads()
            self.pool.connect { [weak self] result in
                guard let self else { return }
                guard case .exchange(let current) = self.state, current === exchange else {
                    // The exchange ended (client gone) while connecting; keep the connection.
                    if case .success(let connection) = result { self.pool.release(connection) }
                    return
                }
                switch result {
                case .success(let connection):
                    guard let context = self.context else { return }
                    self.attach(exchange, to: connection, reused: false, context: context)
                case .failure(let error):
                    guard let context = self.context else { return }
                    self.resumeClientReads()
                    self.upstreamUnavailable(exchange, Self.connectFailure(error), context: context)
                }
            }
        }
    }

    /// A connect that did not complete within `upstream_connect_timeout` (a blackholed
    /// upstream: SYNs dropped) is a timeout, 504, as nginx answers it; a refused or reset
    /// connect is 502 (SPEC §3 step 5).
    private static func connectFailure(_ error: any Error) -> ProxyRejection {
        if let channelError = error as? ChannelError, case .connectTimeout = channelError {
            return .upstreamTimeout
        }
        return .upstreamUnavailable
    }

    private func attach(_ exchange: Exchange, to connection: UpstreamHandler, reused: Bool, context: ChannelHandlerContext) {
        exchange.upstream = connection
        exchange.reusedConnection = reused
        connection.receiver = self
        connection.write(.head(exchange.upstreamHead))
        for part in exchange.pending {
            if case .body = part { exchange.bodySentUpstream = true }
            connection.write(part)
        }
        exchange.pending.removeAll()
        connection.flush()
        exchange.upstreamSent = .now()
        // Expect: 100-continue (RFC 9110 §10.1.1). The request is past every check and has a
        // connection to go to, so the client may send its body now. Subgate answers this itself
        // and does not forward `Expect` (HeaderRewrite): many upstreams never send a 100, and a
        // client waiting for one would stall until its own timeout.
        if exchange.framing.expectsContinue && !exchange.continueSent && !exchange.responseHeadSent
            && !exchange.requestEnded && exchange.requestBodyBytes == 0
        {
            exchange.continueSent = true
            let interim = HTTPResponseHead(version: .http1_1, status: .continue)
            context.writeAndFlush(Self.wrapOutboundOut(.head(interim)), promise: nil)
        }
        let timeout = TimeAmount(self.shared.config.upstreamTimeout)
        self.upstreamDeadline.set(context.eventLoop.now + timeout, on: context.eventLoop) { [weak self] in
            self?.upstreamTimerFired()
        }
        if connection.isWritable {
            self.resumeClientReads()
        } else {
            self.pauseClientReads()
        }
    }

    /// `upstream_timeout` (SPEC §2): no answer head within it → 504.
    private func upstreamTimerFired() {
        guard let context = self.context else { return }
        let due = self.upstreamDeadline.fired(now: context.eventLoop.now, on: context.eventLoop) { [weak self] in
            self?.upstreamTimerFired()
        }
        guard due, case .exchange(let exchange) = self.state, !exchange.responseHeadReceived else { return }
        if exchange.relay?.isReplaying == true {
            // A repeat waiting for the rest of its body: the client is too slow, not the upstream.
            self.respondWithRejection(exchange, .bodyTimeout, context: context)
            return
        }
        self.abortUpstream(exchange)
        self.respondWithRejection(exchange, .upstreamTimeout, context: context)
    }

    private func bodyTooLarge(_ exchange: Exchange, context: ChannelHandlerContext) {
        self.abortUpstream(exchange)
        if exchange.responseHeadSent {
            exchange.outcome = "payload_too_large"
            self.settleAndLog(exchange)
            self.state = .closed
            context.close(promise: nil)
        } else {
            self.respondWithRejection(exchange, .payloadTooLarge, context: context)
        }
    }

    /// Detaches and closes the exchange's upstream connection: it may carry a partial request.
    private func abortUpstream(_ exchange: Exchange) {
        self.upstreamDeadline.clear()
        if let upstream = exchange.upstream {
            exchange.upstream = nil
            upstream.close()
        }
    }

    private func pauseClientReads() {
        self.readsPaused = true
    }

    private func resumeClientReads() {
        guard self.readsPaused else { return }
        self.readsPaused = false
        if self.readPending, let context = self.context {
            self.readPending = false
            context.read()
        }
    }
}

// MARK: - Phase: stream the answer

extension ProxyHandler: UpstreamResponseReceiver {
    func upstreamResponseHead(_ head: HTTPResponseHead) {
        guard case .exchange(let exchange) = self.state, let context = self.context else { return }
        let code = head.status.code
        if code >= 100 && code < 200 {
            if code == 101 {
                // Subgate never asks for an upgrade; a 101 means the upstream is confused.
                self.upstreamUnavailable(exchange, .upstreamUnavailable, context: context)
                return
            }
            // 100 Continue and other interim answers go to HTTP/1.1 clients only, and a 100 only
            // once: Subgate may have sent its own (see `attach`).
            if exchange.clientVersion.minor >= 1 && !exchange.responseHeadSent
                && !(code == 100 && exchange.continueSent)
            {
                var interim = head
                interim.version = .http1_1
                interim.headers = HTTPHeaders()
                context.writeAndFlush(Self.wrapOutboundOut(.head(interim)), promise: nil)
            }
            return
        }
        self.upstreamDeadline.clear()
        exchange.responseHeadReceived = true
        if let sent = exchange.upstreamSent {
            self.shared.metrics.upstreamDuration.recordNanoseconds(Int64((NIODeadline.now() - sent).nanoseconds))
        }
        var headers: HTTPHeaders
        switch HeaderRewrite.clientResponseHeaders(head.headers) {
        case .success(let rewritten):
            headers = rewritten.headers
            // The upstream's billing instruction is Subgate's, never the client's.
            if let usage = rewritten.usage {
                if let units = Billing.units(header: usage) {
                    exchange.billedUnits = units
                } else {
                    self.shared.logger.warning("the upstream sent an invalid x-subgate-usage (not 0…1000000); billing 1 unit", metadata: ["request_id": .string(exchange.requestID)])
                }
            }
            if let ticket = exchange.ticket, ticket.creditWarning {
                headers.add(name: "x-subscription-warning", value: "soft-limit")
            }
            if let ticket = exchange.ticket, self.shared.config.exposeUsageHeaders {
                if let remaining = ticket.remaining { headers.add(name: "x-subscription-remaining", value: String(remaining)) }
                if let limit = ticket.limit { headers.add(name: "x-subscription-limit", value: String(limit)) }
            }
        case .failure:
            self.upstreamUnavailable(exchange, .upstreamUnavailable, context: context)
            return
        }
        exchange.upstreamKeepAlive = head.isKeepAlive
        exchange.status = code
        if let relay = exchange.relay, !relay.isReplaying {
            relay.answer = RelayAnswer(
                status: Int(code),
                headers: headers.compactMap { $0.name.caseInsensitiveEquals("content-length") ? nil : RelayAnswer.Field(name: $0.name, value: $0.value) },
                body: []
            )
        }
        var responseHead = HTTPResponseHead(version: .http1_1, status: head.status, headers: headers)
        if exchange.clientVersion.minor == 0 {
            responseHead.version = .http1_0
            // An HTTP/1.0 client cannot read chunked framing: without a length the answer
            // ends with the connection.
            let hasLength = headers.contains(name: "content-length") || exchange.method == .HEAD
                || !head.status.mayHaveResponseBody
            if !hasLength { exchange.closeAfter = true }
        }
        if exchange.closeAfter {
            responseHead.headers.add(name: "connection", value: "close")
        } else if exchange.clientVersion.minor == 0 {
            responseHead.headers.add(name: "connection", value: "keep-alive")
        }
        exchange.responseHeadSent = true
        context.write(Self.wrapOutboundOut(.head(responseHead)), promise: nil)
        self.clientNeedsFlush = true
    }

    func upstreamResponseBody(_ buffer: ByteBuffer) {
        guard case .exchange(let exchange) = self.state, let context = self.context, exchange.responseHeadSent else { return }
        exchange.responseBodyBytes += buffer.readableBytes
        if let relay = exchange.relay, !relay.answerTooLarge, relay.answer != nil {
            if exchange.responseBodyBytes > self.shared.config.relayMaxAnswerBytes {
                relay.answerTooLarge = true
                relay.answer?.body = []
            } else {
                relay.answer?.body.append(contentsOf: buffer.readableBytesView)
            }
        }
        context.write(Self.wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
        self.clientNeedsFlush = true
        if !context.channel.isWritable {
            exchange.upstream?.pauseReads()
        }
    }

    func upstreamResponseEnd(_ trailers: HTTPHeaders?) {
        guard case .exchange(let exchange) = self.state, let context = self.context else { return }
        guard exchange.responseHeadSent else {
            // An end without a head only follows a 1xx that never got its final answer.
            self.upstreamUnavailable(exchange, .upstreamUnavailable, context: context)
            return
        }
        exchange.responseEnded = true
        self.clientNeedsFlush = false
        if let upstream = exchange.upstream {
            exchange.upstream = nil
            // Reusable only after a complete exchange in both directions.
            if exchange.requestEnded && exchange.upstreamKeepAlive {
                self.pool.release(upstream)
            } else {
                upstream.close()
            }
        }
        if exchange.requestEnded {
            self.finishExchange(exchange, context: context, trailers: trailers)
        } else {
            // Early answer: the rest of the request body is read and dropped.
            self.settleAndLog(exchange)
            self.state = .discardingBody(closeAfter: exchange.closeAfter, discarded: 0)
            self.lastEnd = context.writeAndFlush(Self.wrapOutboundOut(.end(trailers)))
            self.resumeClientReads()
        }
    }

    func upstreamReadComplete() {
        if self.clientNeedsFlush, let context = self.context {
            self.clientNeedsFlush = false
            context.flush()
        }
    }

    func upstreamFailed(_ error: any Error) {
        guard case .exchange(let exchange) = self.state, let context = self.context else { return }
        self.upstreamDeadline.clear()
        let connection = exchange.upstream
        exchange.upstream = nil
        connection?.close()
        if exchange.responseHeadSent {
            // Mid-answer: the client must see an aborted answer, never a truncated one that
            // looks complete, so the connection is closed without the final chunk.
            exchange.outcome = "upstream_aborted"
            self.settleAndLog(exchange)
            self.state = .closed
            context.close(promise: nil)
            return
        }
        // A pooled connection the upstream closed while idle: retry once on a new one, only
        // if nothing that cannot be re-sent (body bytes) went out and no answer began.
        if exchange.reusedConnection && !exchange.retried && !exchange.bodySentUpstream
            && !exchange.responseHeadReceived
        {
            exchange.retried = true
            if exchange.requestEnded { exchange.pending.append(.end(nil)) }
            self.startUpstreamFresh(exchange, context: context)
            return
        }
        self.upstreamUnavailable(exchange, .upstreamUnavailable, context: context)
    }

    func upstreamWritabilityChanged(isWritable: Bool) {
        if isWritable {
            self.resumeClientReads()
        } else {
            self.pauseClientReads()
        }
    }

    private func startUpstreamFresh(_ exchange: Exchange, context: ChannelHandlerContext) {
        self.pauseClientReads()
        self.pool.connect { [weak self] result in
            guard let self, case .exchange(let current) = self.state, current === exchange, let context = self.context else {
                if case .success(let connection) = result { connection.close() }
                return
            }
            switch result {
            case .success(let connection):
                self.attach(exchange, to: connection, reused: false, context: context)
            case .failure(let error):
                self.resumeClientReads()
                self.upstreamUnavailable(exchange, Self.connectFailure(error), context: context)
            }
        }
    }

    private func upstreamUnavailable(_ exchange: Exchange, _ rejection: ProxyRejection, context: ChannelHandlerContext) {
        self.abortUpstream(exchange)
        if exchange.responseHeadSent {
            exchange.outcome = "upstream_aborted"
            self.settleAndLog(exchange)
            self.state = .closed
            context.close(promise: nil)
        } else {
            self.respondWithRejection(exchange, rejection, context: context)
        }
    }
}

// MARK: - Phases: answer with Subgate's own response, settle, log

extension ProxyHandler {
    /// Answers an exchange that has not sent a head yet with `rejection`.
    /// With `keepConnection`, a request whose body has not ended yet is read and dropped (up to
    /// a limit) and the connection stays open; else such a connection closes after the answer.
    private func respondWithRejection(_ exchange: Exchange, _ rejection: ProxyRejection, context: ChannelHandlerContext, keepConnection: Bool = false) {
        exchange.outcome = rejection.code.lowercased()
        exchange.status = rejection.status.code
        exchange.responseHeadSent = true
        exchange.responseEnded = true
        // The rest of an unfinished body is read and dropped; with `keepConnection` the
        // connection then serves the next request, else it closes.
        let keep = keepConnection && !rejection.closeConnection && !exchange.closeAfter
        let close = rejection.closeConnection || exchange.closeAfter || (!exchange.requestEnded && !keep)
        let (head, body) = ErrorResponseWriter.parts(rejection, version: exchange.clientVersion, close: close, allocator: context.channel.allocator)
        exchange.responseBodyBytes = body.readableBytes
        self.settleAndLog(exchange)
        // The next state is set before the answer is written: see `enterStateAfterAnswer`.
        let closing: Bool
        if !exchange.requestEnded && !rejection.closeConnection {
            self.state = .discardingBody(closeAfter: close, discarded: 0)
            closing = false
        } else {
            closing = close
            self.enterStateAfterAnswer(close: close)
        }
        self.resumeClientReads()
        self.write(head: head, body: body, context: context)
        if closing {
            self.closeGracefully(context: context)
        }
    }

    /// The state a connection enters once an answer is complete: `lingering` before a close,
    /// else `idle` with the idle timer armed. It must be entered *before* the answer's end is
    /// written: writing it makes HTTPServerPipelineHandler deliver the next pipelined request
    /// into this handler at once, re-entrantly, and that request must find the connection
    /// closing (it is then ignored, never forwarded) or idle (it is then served) — not still in
    /// the previous answer's state, which the caller would then write over the new exchange.
    private func enterStateAfterAnswer(close: Bool) {
        if close {
            self.state = .lingering
        } else {
            self.state = .idle
            self.timeouts.exchangeFinished()
        }
    }

    /// Writes Subgate's own answer (head, JSON body, end) and flushes.
    private func write(head: HTTPResponseHead, body: ByteBuffer, context: ChannelHandlerContext) {
        context.write(Self.wrapOutboundOut(.head(head)), promise: nil)
        context.write(Self.wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        self.lastEnd = context.writeAndFlush(Self.wrapOutboundOut(.end(nil)))
    }

    /// Answers a request that never became an exchange (its head failed the rules).
    private func reject(
        _ rejection: ProxyRejection,
        version: HTTPVersion,
        requestEnded: Bool,
        context: ChannelHandlerContext,
        started: NIODeadline = .now(),
        method: HTTPMethod? = nil,
        uri: String? = nil,
        clientKeepAlive: Bool? = nil
    ) {
        // A rejection that leaves the framing intact keeps a keep-alive connection: the rest of
        // the body (if any) is read and dropped. Framing errors always close, and so does a
        // client that asked to (`Connection: close`, or HTTP/1.0 without keep-alive: RFC 9112 §9.6).
        let keep = !rejection.closeConnection && (clientKeepAlive ?? false)
        let close = !keep && (rejection.closeConnection || !requestEnded || clientKeepAlive == false)
        // The next state is set before the answer is written: see `enterStateAfterAnswer`.
        if !close && !requestEnded {
            self.state = .discardingBody(closeAfter: false, discarded: 0)
        } else {
            self.enterStateAfterAnswer(close: close)
        }
        if method == .CONNECT, close,
            let encoder = try? context.pipeline.syncOperations.context(handlerType: HTTPResponseEncoder.self)
        {
            // NIO's encoder frames every answer to a CONNECT as bodiless (it cannot tell a refusal
            // from a tunnel being opened), which would drop the SPEC §3 JSON body and its length.
            // A CONNECT is always refused and its connection closed, so the whole answer is
            // written as bytes beneath the encoder.
            var buffer = context.channel.allocator.buffer(capacity: 256)
            ErrorResponseWriter.writeRaw(rejection, into: &buffer)
            encoder.writeAndFlush(NIOAny(IOData.byteBuffer(buffer)), promise: nil)
        } else {
            let (head, body) = ErrorResponseWriter.parts(rejection, version: version, close: close, allocator: context.channel.allocator)
            self.write(head: head, body: body, context: context)
        }
        let label = rejection.code.lowercased()
        self.shared.metrics.countRequest(outcome: label)
        self.shared.metrics.requestDuration.recordNanoseconds(Int64((NIODeadline.now() - started).nanoseconds))
        if self.shared.accessLog {
            var path = Substring(uri ?? "-")
            if let q = path.firstIndex(of: "?") { path = path[..<q] }
            self.shared.logger.info(
                "request",
                metadata: [
                    "outcome": .string(label),
                    "status": .stringConvertible(rejection.status.code),
                    "method": .string(method?.rawValue ?? "-"),
                    "path": .string(String(path)),
                    "duration_us": .stringConvertible((NIODeadline.now() - started).nanoseconds / 1000),
                    "client": .string(self.clientAddress ?? "-"),
                ]
            )
        }
        if close {
            self.closeGracefully(context: context)
        }
    }

    /// Writes the end of a relayed answer and gets the connection ready for the next request.
    private func finishExchange(_ exchange: Exchange, context: ChannelHandlerContext, trailers: HTTPHeaders? = nil) {
        self.settleAndLog(exchange)
        // Client reads held for this exchange's request body (the upstream was not writable)
        // must not stay held for the next request once the exchange is over.
        self.resumeClientReads()
        // The next state is set before the end is written: see `enterStateAfterAnswer`.
        self.enterStateAfterAnswer(close: exchange.closeAfter)
        let end = context.writeAndFlush(Self.wrapOutboundOut(.end(trailers)))
        self.lastEnd = end
        if exchange.closeAfter {
            end.assumeIsolated().whenComplete { _ in
                context.close(promise: nil)
            }
        }
    }

    /// Settle (bill or release the reserved unit) and log: runs once per exchange, on every path.
    private func settleAndLog(_ exchange: Exchange) {
        if let relay = exchange.relay, !relay.isReplaying, !relay.settled, let relays = self.shared.relays {
            relay.settled = true
            // Kept only when the upstream answered a whole request with an answer worth
            // repeating: a repeat is then answered from the record. Any other end (Subgate's own
            // answer, an abort, the seller's 5xx, 408 or 429, a HEAD) keeps nothing, and the
            // gateway's retry is forwarded again.
            let worthKeeping = exchange.status < 500 && exchange.status != 408 && exchange.status != 429 && exchange.method != .HEAD
            if exchange.outcome == "forwarded", exchange.requestEnded, exchange.responseEnded, worthKeeping, let answer = relay.answer {
                relays.complete(relayID: relay.id, request: exchange.relayRequestLine, bodyHash: relay.digest.hex(), answer: relay.answerTooLarge ? nil : answer)
            } else {
                relays.abandon(relay.id)
            }
        }
        if let ticket = exchange.ticket, let hash = exchange.tokenHash, let enforcer = self.shared.enforcer {
            exchange.ticket = nil
            // Billed only for a relayed answer that completed with a billable status; every
            // other end (Subgate's own answer, an abort on either side) releases the unit.
            let billable = exchange.outcome == "forwarded" && exchange.responseEnded
                && Billing.isBillable(status: exchange.status, countOn: self.shared.config.usageCountOn)
            enforcer.settle(hash: hash, ticket: ticket, billed: billable ? exchange.billedUnits : 0)
        }
        let now = NIODeadline.now()
        let elapsed = now - exchange.started
        self.shared.metrics.countRequest(outcome: exchange.outcome)
        self.shared.metrics.requestDuration.recordNanoseconds(Int64(elapsed.nanoseconds))
        guard self.shared.accessLog else { return }
        var metadata: Logger.Metadata = [
            "outcome": .string(exchange.outcome),
                "status": .stringConvertible(exchange.status),
                "method": .string(exchange.method.rawValue),
                "path": .string(String(exchange.logPath)),
                "duration_us": .stringConvertible(elapsed.nanoseconds / 1000),
                "bytes_in": .stringConvertible(exchange.requestBodyBytes),
                "bytes_out": .stringConvertible(exchange.responseBodyBytes),
                "request_id": .string(exchange.requestID),
            "token": .string(exchange.tokenHash.map(TokenHash.logPrefix) ?? "-"),
            "client": .string(self.clientAddress ?? "-"),
        ]
        if let relay = exchange.relay { metadata["relay_id"] = .string(relay.id) }
        if self.shared.config.backend == .crovver {
            // Keyed by tenant, which is no secret: logged whole, never as a token.
            metadata["token"] = nil
            metadata["tenant"] = .string(exchange.tokenHash ?? "-")
        }
        self.shared.logger.info("request", metadata: metadata)
    }

    /// A repeat of a recorded relay id (SPEC §6): the same body replays the recorded answer
    /// without calling the upstream; another body is refused.
    private func replay(_ exchange: Exchange, record: RelayRecord, bodyHash: String, context: ChannelHandlerContext) {
        let decision = RelayBook.replay(record, request: exchange.relayRequestLine, bodyHash: bodyHash)
        self.shared.relays?.countReplay(decision)
        switch decision {
        case .bodyMismatch:
            self.respondWithRejection(exchange, .relayIDReused, context: context, keepConnection: true)
        case .notReplayable:
            self.respondWithRejection(exchange, .relayNotReplayable, context: context, keepConnection: true)
        case .answer(let answer):
            var headers = HTTPHeaders(answer.headers.map { ($0.name, $0.value) })
            headers.add(name: "content-length", value: String(answer.body.count))
            if exchange.closeAfter {
                headers.add(name: "connection", value: "close")
            } else if exchange.clientVersion.minor == 0 {
                headers.add(name: "connection", value: "keep-alive")
            }
            let version: HTTPVersion = exchange.clientVersion.minor == 0 ? .http1_0 : .http1_1
            exchange.outcome = "relay_replayed"
            exchange.status = UInt(answer.status)
            exchange.responseHeadSent = true
            exchange.responseEnded = true
            exchange.responseBodyBytes = answer.body.count
            context.write(Self.wrapOutboundOut(.head(HTTPResponseHead(version: version, status: HTTPResponseStatus(statusCode: answer.status), headers: headers))), promise: nil)
            if exchange.method != .HEAD && !answer.body.isEmpty {
                context.write(Self.wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: answer.body)))), promise: nil)
            }
            self.finishExchange(exchange, context: context)
        }
    }

    /// Closes the output after what was written, then drains input briefly so the client
    /// reads the answer instead of a reset (the "lingering close" of nginx).
    private func closeGracefully(context: ChannelHandlerContext) {
        self.state = .lingering
        self.resumeClientReads()
        let channel = context.channel
        context.flush()
        if self.clientInputClosed {
            // The client shut its side already: NIO turns an output close into a full close,
            // which fails the writes still queued (a slow reader's answer would be cut short).
            // Nothing is left to drain, so close once the last answer's end has gone out.
            self.closingInputDone = true
            (self.lastEnd ?? context.eventLoop.makeSucceededVoidFuture()).assumeIsolated().whenComplete { _ in
                channel.close(promise: nil)
            }
            return
        }
        context.close(mode: .output).assumeIsolated().whenComplete { [weak self] _ in
            self?.outputClosed = true
            if self?.closingInputDone ?? true {
                channel.close(promise: nil)
                return
            }
            channel.eventLoop.assumeIsolated().scheduleTask(in: Self.lingerTime) {
                channel.close(promise: nil)
            }
        }
    }

    /// Closing, and the input ended or turned to garbage: there is nothing left to drain, so
    /// the connection closes once its output is shut. Never at once: the answer that made it
    /// close may still be waiting for its flush (written re-entrantly, `enterStateAfterAnswer`).
    private func inputDoneWhileClosing(context: ChannelHandlerContext) {
        self.closingInputDone = true
        if self.outputClosed {
            context.close(promise: nil)
        }
    }
}
