import Crypto
import NIOCore
import NIOHTTP1

/// Requests relayed by the Crochet pay-per-call gateway (SPEC §6, seed 001): the gateway has
/// settled the payment, so the request needs no subscription token and bills nothing.
public enum GatewayRelay {
    public static let relayIDHeader = "x-crochet-relay-request-id"
    public static let secretHeader = "x-crochet-gateway-secret"

    public enum Classification: Equatable {
        /// Not a relayed call: the subscription token decides.
        case notRelayed
        /// A relayed call with the right secret.
        case relayed(id: String)
        case reject(ProxyRejection)
    }

    /// Decides whether `headers` are a gateway-relayed call. Only with `gateway_secret` set:
    /// without it Subgate knows no relayed calls and the token decides, as for any request.
    public static func classify(_ headers: HTTPHeaders, secret: Secret?) -> Classification {
        guard let secret else { return .notRelayed }
        let ids = headers[Self.relayIDHeader]
        if ids.isEmpty { return .notRelayed }
        guard ids.count == 1 else { return .reject(.badRequest("The request carries x-crochet-relay-request-id more than once.")) }
        guard RelayBook.isValidRelayID(ids[0]) else {
            return .reject(.badRequest("x-crochet-relay-request-id must be 1 to 128 visible ASCII characters."))
        }
        let secrets = headers[Self.secretHeader]
        // No secret at all: not the gateway's call (a buyer's SDK may pass a relay id along);
        // the token decides. A repeated or wrong secret: someone is posing as the gateway.
        if secrets.isEmpty { return .notRelayed }
        guard secrets.count == 1, secret.matches(secrets[0].utf8) else { return .reject(.tokenInvalid) }
        return .relayed(id: ids[0])
    }
}

/// The SHA-256 of a request body, fed as it streams (only the hash is kept, never the body).
public struct BodyDigest {
    private var hasher = SHA256()

    public init() {}

    public mutating func update(_ buffer: ByteBuffer) {
        buffer.withUnsafeReadableBytes { self.hasher.update(bufferPointer: $0) }
    }

    /// Lowercase hex of the digest of everything fed so far.
    public func hex() -> String {
        self.hasher.finalize().withUnsafeBytes(ASCII.hex)
    }
}

extension ProxyRejection {
    /// A repeat of a relayed call whose body did not arrive within `upstream_timeout`.
    public static let bodyTimeout = ProxyRejection(
        status: .requestTimeout,
        code: "REQUEST_TIMEOUT",
        message: "The request body was not received in time.",
        closeConnection: true
    )

    /// A relay id already used for another request body (seed 001: "cannot be reused to pay
    /// for a different request").
    public static let relayIDReused = ProxyRejection(
        status: .conflict,
        code: "RELAY_ID_REUSED",
        message: "This relay request id was already used for a different request body."
    )

    /// The first call with this relay id has not been answered yet.
    public static let relayInProgress = ProxyRejection(
        status: .conflict,
        code: "RELAY_IN_PROGRESS",
        message: "The first call with this relay request id is still in progress; retry shortly.",
        extraHeaders: [("retry-after", "1")]
    )

    /// The same call again, whose answer was too large to keep for replay.
    public static let relayNotReplayable = ProxyRejection(
        status: .conflict,
        code: "RELAY_NOT_REPLAYABLE",
        message: "This relay request id was already answered; the answer was too large to replay."
    )
}
