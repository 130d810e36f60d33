import AsyncHTTPClient
import CoreMetrics
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import SubgateCore

/// The Crochet seller API over AsyncHTTPClient (TLS, pooled, connect and read timeouts):
/// `POST /subscriptions/tokens/verify` and `/tokens/usage` (seed 000). It turns every answer
/// into a `VerifyOutcome` / `UsageOutcome` and counts it in
/// `subgate_control_plane_requests_total{endpoint,status}`; budgets, back-off and the circuit
/// breaker are the caller's (`Enforcer`, `UsageFlusher`). Only hashes leave this process.
public final class ControlPlaneClient: Sendable {
    public enum Endpoint: String, Sendable { case verify, usage, consume }

    private let client: HTTPClient
    private let baseURL: String
    private let authorization: String
    private let requestTimeout: TimeAmount
    private let logger: Logger

    /// The longest one call can take (connect, then the read timeout).
    public var callTimeout: Duration { .seconds(2) + .nanoseconds(self.requestTimeout.nanoseconds) }

    public init(baseURL: String, sellerKey: String, requestTimeout: Duration = .seconds(5), logger: Logger) {
        var configuration = HTTPClient.Configuration()
        configuration.timeout = .init(connect: .seconds(2), read: TimeAmount(requestTimeout))
        configuration.connectionPool = .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: 8)
        // A refused connection fails the call at once: AsyncHTTPClient would otherwise retry
        // until the connect timeout, holding every new token's request 2 s while the control
        // plane is down. Retrying is the caller's (circuit breaker, flush back-off).
        configuration.connectionPool.retryConnectionEstablishment = false
        configuration.decompression = .disabled
        configuration.redirectConfiguration = .disallow
        self.client = HTTPClient(eventLoopGroupProvider: .shared(MultiThreadedEventLoopGroup.singleton), configuration: configuration)
        self.baseURL = baseURL.hasSuffix("/") ? String(baseURL.dropLast()) : baseURL
        self.authorization = "Bearer \(sellerKey)"
        self.requestTimeout = TimeAmount(requestTimeout)
        self.logger = logger
    }

    public func shutdown() async {
        try? await self.client.shutdown()
    }

    // MARK: verify

    public func verify(hash: String) async -> VerifyOutcome {
        let answer = await self.post(.verify, path: "/subscriptions/tokens/verify", body: "{\"token_hash\":\"\(hash)\"}")
        switch answer {
        case .notSent(let reason), .noAnswer(let reason):
            return .failed(reason: reason, retryAfter: nil)
        case .answered(let status, let headers, let body):
            switch status {
            case 200:
                guard let json = Self.object(body), let valid = json["valid"] as? Bool else {
                    return .failed(reason: "verify answered 200 with a body that is not the seed's shape", retryAfter: nil)
                }
                guard valid else { return .invalid }
                guard let data = json["data"] as? [String: Any], let info = Self.tokenInfo(data) else {
                    return .failed(reason: "verify answered valid:true without usable data", retryAfter: nil)
                }
                return .valid(info)
            case 403, 404:
                return .invalid
            case 401:
                return .unauthorized
            case 429:
                return .failed(reason: "verify rate-limited (429)", retryAfter: RetryAfter.parse(headers.first(name: "retry-after"), now: Date()))
            default:
                return .failed(reason: "verify answered \(status)", retryAfter: RetryAfter.parse(headers.first(name: "retry-after"), now: Date()))
            }
        }
    }

    // MARK: usage

    public func reportUsage(hash: String, count: Int) async -> UsageOutcome {
        let answer = await self.post(.usage, path: "/subscriptions/tokens/usage", body: "{\"token_hash\":\"\(hash)\",\"count\":\(count)}")
        switch answer {
        case .notSent(let reason):
            return .failed(reason: reason)
        case .noAnswer(let reason):
            return .unknown(reason: reason)
        case .answered(let status, let headers, let body):
            switch status {
            case 200..<300:
                let data = Self.object(body)?["data"] as? [String: Any]
                return .accepted(
                    usageCount: data?["usage_count"] as? Int,
                    usageLimit: data?["usage_limit"] as? Int,
                    remaining: data?["remaining"] as? Int,
                    status: data?["status"] as? String
                )
            case 400, 403, 404:
                return .rejected(status: status)
            case 401:
                return .unauthorized
            case 429:
                return .rateLimited(retryAfter: RetryAfter.parse(headers.first(name: "retry-after"), now: Date()))
            default:
                return .failed(reason: "usage answered \(status)")
            }
        }
    }

    // MARK: transport

    enum Answer {
        /// The request certainly did not reach the control plane (connect failed).
        case notSent(String)
        /// It may have: the connection broke or timed out after sending.
        case noAnswer(String)
        case answered(status: Int, headers: HTTPHeaders, body: ByteBuffer)
    }

    func post(_ endpoint: Endpoint, path: String, body: String) async -> Answer {
        var request = HTTPClientRequest(url: self.baseURL + path)
        request.method = .POST
        request.headers.add(name: "authorization", value: self.authorization)
        request.headers.add(name: "content-type", value: "application/json")
        request.headers.add(name: "user-agent", value: "subgate/\(SubgateVersion.string)")
        request.body = .bytes(ByteBuffer(string: body))
        let answer: Answer
        do {
            let response = try await self.client.execute(request, timeout: self.requestTimeout)
            let bytes = try await response.body.collect(upTo: 1 << 20)
            answer = .answered(status: Int(response.status.code), headers: response.headers, body: bytes)
        } catch {
            answer = Self.isConnectFailure(error) ? .notSent("\(error)") : .noAnswer("\(error)")
        }
        let label: String
        switch answer {
        case .answered(let status, _, _): label = String(status)
        case .notSent: label = "connect_error"
        case .noAnswer: label = "no_answer"
        }
        Counter(label: "subgate_control_plane_requests_total", dimensions: [("endpoint", endpoint.rawValue), ("status", label)]).increment()
        return answer
    }

    private static func isConnectFailure(_ error: any Error) -> Bool {
        if let error = error as? HTTPClientError, error == .connectTimeout { return true }
        if error is NIOConnectionError { return true }
        if let io = error as? IOError, io.errnoCode == ECONNREFUSED { return true }
        let text = String(describing: error)
        return text.contains("connectTimeout") || text.contains("Connection refused") || text.contains("connectionRefused")
    }

    // MARK: JSON (off the hot path: Foundation is fine here)

    static func object(_ body: ByteBuffer) -> [String: Any]? {
        let bytes = Data(body.readableBytesView)
        return (try? JSONSerialization.jsonObject(with: bytes)) as? [String: Any]
    }

    static func tokenInfo(_ data: [String: Any]) -> TokenInfo? {
        guard let status = data["status"] as? String else { return nil }
        return TokenInfo(
            listingID: data["listing_id"] as? String ?? "",
            subscriberID: data["subscriber_id"] as? String ?? "",
            status: status,
            usageCount: data["usage_count"] as? Int,
            usageLimit: data["usage_limit"] as? Int,
            remaining: data["remaining"] as? Int,
            expiresAt: (data["expires_at"] as? String).flatMap(Self.parseDate)
        )
    }

    static func parseDate(_ text: String) -> Date? {
        let plain = ISO8601DateFormatter()
        if let date = plain.date(from: text) { return date }
        let fractional = ISO8601DateFormatter()
        fractional.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return fractional.date(from: text)
    }
}
