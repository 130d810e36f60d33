import Foundation
import NIOCore
import NIOHTTP1

/// The channel shell around `SimulatorCore`: collects a request, asks for the plan, waits
/// an injected latency on the event loop, then answers, drops or hangs; a gateway call
/// that the store forwards is made through the `GatewayForwarder` and its outcome handed
/// back to the store for the answer.
final class SimulatorHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    /// Bodies are small JSON documents; anything larger is refused.
    static let maxBodyBytes = 1 << 20

    private let core: SimulatorCore
    private let forwarder: GatewayForwarder
    private var head: HTTPRequestHead?
    private var body: [UInt8] = []
    private var bodyTooLarge = false

    init(core: SimulatorCore, forwarder: GatewayForwarder) {
        self.core = core
        self.forwarder = forwarder
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch Self.unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
            self.body.removeAll(keepingCapacity: true)
            self.bodyTooLarge = false
        case .body(let chunk):
            if self.body.count + chunk.readableBytes > Self.maxBodyBytes {
                self.bodyTooLarge = true
            } else {
                self.body.append(contentsOf: chunk.readableBytesView)
            }
        case .end:
            guard let head = self.head else { return }
            self.head = nil
            self.handle(head, context: context)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    // MARK: - Phases

    private func handle(_ head: HTTPRequestHead, context: ChannelHandlerContext) {
        let keepAlive = head.isKeepAlive
        if self.bodyTooLarge {
            let response = SimulatorResponse.error(.badRequest, "BAD_REQUEST", "The body is larger than \(Self.maxBodyBytes) bytes.")
            self.write(response, keepAlive: false, context: context)
            return
        }
        let path = head.uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
        let request = SimulatorRequest(method: head.method, path: String(path), headers: head.headers, body: Data(self.body))
        let plan = self.core.plan(request)
        guard let latency = plan.latency else {
            self.finish(plan.outcome, request, keepAlive: keepAlive, context: context)
            return
        }
        context.eventLoop.assumeIsolated().scheduleTask(in: TimeAmount(latency)) {
            guard context.channel.isActive else { return }
            self.finish(plan.outcome, request, keepAlive: keepAlive, context: context)
        }
    }

    private func finish(_ outcome: SimulatorPlan.Outcome, _ request: SimulatorRequest, keepAlive: Bool, context: ChannelHandlerContext) {
        switch outcome {
        case .respond(let response):
            self.write(response, keepAlive: keepAlive, context: context)
        case .drop:
            context.close(promise: nil)
        case .hang:
            break
        case .serve(let endpoint):
            self.serve(endpoint, request, answer: true, keepAlive: keepAlive, context: context)
        case .serveThenDrop(let endpoint):
            self.serve(endpoint, request, answer: false, keepAlive: keepAlive, context: context)
        }
    }

    /// Serves the call (committing what it changes); then answers, or closes unanswered.
    private func serve(_ endpoint: SimulatedEndpoint, _ request: SimulatorRequest, answer: Bool, keepAlive: Bool, context: ChannelHandlerContext) {
        let deliver = { (response: SimulatorResponse) in
            if answer {
                self.write(response, keepAlive: keepAlive, context: context)
            } else {
                context.close(promise: nil)
            }
        }
        switch self.core.serve(endpoint, request) {
        case .respond(let response):
            deliver(response)
        case .forward(let forward):
            // The forward completes, and is recorded, even when the buyer has gone.
            let core = self.core
            self.forwarder.forward(forward, on: context.eventLoop).assumeIsolated().whenSuccess { outcome in
                let response = core.finishForward(forward, outcome)
                guard context.channel.isActive else { return }
                deliver(response)
            }
        }
    }

    private func write(_ response: SimulatorResponse, keepAlive: Bool, context: ChannelHandlerContext) {
        let body = context.channel.allocator.buffer(bytes: response.bytes)
        var headers = HTTPHeaders()
        headers.add(name: "content-type", value: "application/json")
        headers.add(name: "content-length", value: String(body.readableBytes))
        for header in response.headers { headers.add(name: header.name, value: header.value) }
        if !keepAlive { headers.add(name: "connection", value: "close") }
        context.write(Self.wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: response.status, headers: headers))), promise: nil)
        context.write(Self.wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        context.writeAndFlush(Self.wrapOutboundOut(.end(nil))).assumeIsolated().whenComplete { _ in
            if !keepAlive { context.close(promise: nil) }
        }
    }
}
