import AsyncHTTPClient
import Foundation
import NIOCore
import NIOConcurrencyHelpers
import NIOHTTP1

/// Makes the gateway's calls to sellers' endpoints: a POST with the buyer's body and the
/// gateway's headers, the answer collected up to `maxAnswerBytes`. No redirects are
/// followed (a seller's endpoint is where the call goes) and a refused connection is not
/// retried. The HTTP client is made on the first forward, so a simulator that never
/// forwards never owns one.
final class GatewayForwarder: Sendable {
    /// Sellers' answers are JSON documents; anything larger is a failure.
    static let maxAnswerBytes = 1 << 20

    private let group: any EventLoopGroup
    private let timeout: TimeAmount
    /// nil until the first forward; `stopped` once shut down.
    private let state = NIOLockedValueBox<(client: HTTPClient?, stopped: Bool)>((nil, false))

    init(group: any EventLoopGroup, timeout: TimeAmount = .seconds(30)) {
        self.group = group
        self.timeout = timeout
    }

    /// The client, made on first use; nil once shut down.
    private func client() -> HTTPClient? {
        self.state.withLockedValue { state in
            if state.stopped { return nil }
            if let client = state.client { return client }
            var configuration = HTTPClient.Configuration()
            configuration.redirectConfiguration = .disallow
            configuration.timeout = .init(connect: .seconds(5), read: self.timeout)
            // A refused connection is the seller being down: answer 502 at once rather than
            // retry until the connect timeout, so tests and buyers see the failure promptly.
            configuration.connectionPool.retryConnectionEstablishment = false
            let client = HTTPClient(eventLoopGroup: self.group, configuration: configuration)
            state.client = client
            return client
        }
    }

    /// The seller's outcome, on `eventLoop`; never fails.
    func forward(_ forward: GatewayForward, on eventLoop: any EventLoop) -> EventLoopFuture<SellerOutcome> {
        guard let client = self.client() else {
            return eventLoop.makeSucceededFuture(.failed("the simulator is stopping"))
        }
        let request: HTTPClient.Request
        do {
            var headers = HTTPHeaders()
            for header in forward.headers { headers.add(name: header.name, value: header.value) }
            request = try HTTPClient.Request(url: forward.url, method: .POST, headers: headers, body: .byteBuffer(ByteBuffer(bytes: forward.body)))
        } catch {
            return eventLoop.makeSucceededFuture(.failed("the endpoint URL cannot be called: \(error)"))
        }
        let accumulator = ResponseAccumulator(request: request, maxBodySize: Self.maxAnswerBytes)
        return client
            .execute(request: request, delegate: accumulator, eventLoop: .delegate(on: eventLoop), deadline: .now() + self.timeout)
            .futureResult
            .map { response -> SellerOutcome in
                let body = response.body.map { Data($0.readableBytesView) } ?? Data()
                return .answered(status: Int(response.status.code), contentType: response.headers.first(name: "content-type"), body: body)
            }
            .recover { error in .failed(String(describing: error)) }
            .hop(to: eventLoop)
    }

    /// Shuts the client down, if one was made; later forwards fail at once.
    func shutdown() async {
        let client = self.state.withLockedValue { state -> HTTPClient? in
            state.stopped = true
            defer { state.client = nil }
            return state.client
        }
        try? await client?.shutdown()
    }
}
