import NIOHTTP1

/// An answer Subgate gives itself instead of the upstream's: a status and the SPEC §3
/// JSON body `{"success":false,"error":{"code":…,"message":…}}`.
public struct ProxyRejection: Error, Sendable, Equatable {
    /// The HTTP status of the answer.
    public var status: HTTPResponseStatus
    /// The machine-readable `error.code`.
    public var code: String
    /// A sentence for the human behind the buyer's agent.
    public var message: String
    /// Whether the client connection must be closed after this answer (framing errors:
    /// whatever follows on the connection can no longer be trusted).
    public var closeConnection: Bool
    /// Extra headers for the answer (`Retry-After`, `Allow`).
    public var extraHeaders: [(String, String)]

    public init(
        status: HTTPResponseStatus,
        code: String,
        message: String,
        closeConnection: Bool = false,
        extraHeaders: [(String, String)] = []
    ) {
        self.status = status
        self.code = code
        self.message = message
        self.closeConnection = closeConnection
        self.extraHeaders = extraHeaders
    }

    public static func == (lhs: ProxyRejection, rhs: ProxyRejection) -> Bool {
        lhs.status == rhs.status && lhs.code == rhs.code && lhs.message == rhs.message
            && lhs.closeConnection == rhs.closeConnection
            && lhs.extraHeaders.elementsEqual(rhs.extraHeaders, by: { $0 == $1 })
    }

    /// The JSON body, escaped.
    public var jsonBody: String {
        "{\"success\":false,\"error\":{\"code\":\(JSONString.quote(self.code)),\"message\":\(JSONString.quote(self.message))}}"
    }
}

// MARK: - The catalogue of Subgate's own answers

extension ProxyRejection {
    /// 400 for a request whose framing or head cannot be trusted; the connection is closed.
    public static func badRequest(_ message: String) -> ProxyRejection {
        ProxyRejection(status: .badRequest, code: "BAD_REQUEST", message: message, closeConnection: true)
    }

    /// 431: the head is larger than `max_header_bytes` or has too many fields.
    public static let headersTooLarge = ProxyRejection(
        status: .requestHeaderFieldsTooLarge,
        code: "HEADERS_TOO_LARGE",
        message: "The request head is larger than this endpoint accepts; send fewer or smaller headers.",
        closeConnection: true
    )

    /// 413: the body is larger than `max_body_bytes`.
    public static let payloadTooLarge = ProxyRejection(
        status: .payloadTooLarge,
        code: "PAYLOAD_TOO_LARGE",
        message: "The request body is larger than this endpoint accepts.",
        closeConnection: true
    )

    /// 502: the upstream refused, reset or answered with a message that cannot be relayed safely.
    public static let upstreamUnavailable = ProxyRejection(
        status: .badGateway,
        code: "UPSTREAM_UNAVAILABLE",
        message: "The seller's service could not be reached or gave an invalid answer; try again shortly."
    )

    /// 504: no upstream answer head within `upstream_timeout`, or no connection within
    /// `upstream_connect_timeout` (a blackholed upstream).
    public static let upstreamTimeout = ProxyRejection(
        status: .gatewayTimeout,
        code: "UPSTREAM_TIMEOUT",
        message: "The seller's service did not answer in time; try again shortly."
    )

    /// 408: the client did not send its whole head within `header_read_timeout`.
    public static let requestTimeout = ProxyRejection(
        status: .requestTimeout,
        code: "REQUEST_TIMEOUT",
        message: "The request head was not received in time.",
        closeConnection: true
    )

    /// 501: protocol upgrades (WebSocket, h2c) and CONNECT are not relayed.
    public static let upgradeNotSupported = ProxyRejection(
        status: .notImplemented,
        code: "UPGRADE_NOT_SUPPORTED",
        message: "Protocol upgrades and CONNECT are not supported by this endpoint; send plain HTTP/1.1 requests.",
        closeConnection: true
    )

    /// 417: an `Expect` other than `100-continue`.
    public static let expectationFailed = ProxyRejection(
        status: .expectationFailed,
        code: "EXPECTATION_FAILED",
        message: "Only 'Expect: 100-continue' is supported.",
        closeConnection: true
    )

    /// 503 while the process is shutting down and a request still arrives.
    public static let shuttingDown = ProxyRejection(
        status: .serviceUnavailable,
        code: "SHUTTING_DOWN",
        message: "This instance is shutting down; retry on another connection.",
        closeConnection: true,
        extraHeaders: [("retry-after", "1")]
    )
}

/// Minimal JSON string quoting (RFC 8259 §7), used for the few bodies Subgate writes itself
/// so that the hot path does not go through Foundation's encoder.
public enum JSONString {
    public static func quote(_ s: String) -> String {
        var out = "\""
        out.reserveCapacity(s.utf8.count + 2)
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20:
                let hex = String(scalar.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(scalar)
            }
        }
        out += "\""
        return out
    }
}
