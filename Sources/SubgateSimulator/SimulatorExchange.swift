import Foundation
import NIOHTTP1

/// A request as the channel handler collected it (bodies are small JSON documents).
struct SimulatorRequest: Sendable {
    var method: HTTPMethod
    /// The path, without the query.
    var path: String
    /// Every header field as received.
    var headers: HTTPHeaders
    var body: Data

    init(method: HTTPMethod, path: String, authorization: String? = nil, headers: HTTPHeaders = [:], body: Data = Data()) {
        self.method = method
        self.path = path
        self.headers = headers
        if let authorization { self.headers.replaceOrAdd(name: "authorization", value: authorization) }
        self.body = body
    }

    /// A POST with a JSON body, for tests and the Swift API.
    init(post path: String, authorization: String? = nil, headers: HTTPHeaders = [:], json: String) {
        self.init(method: .POST, path: path, authorization: authorization, headers: headers, body: Data(json.utf8))
    }

    /// The `Authorization` field, if any.
    var authorization: String? { self.headers.first(name: "authorization") }

    /// The first field named `name` (case-insensitive), trimmed; nil when absent or empty.
    func header(_ name: String) -> String? {
        guard let value = self.headers.first(name: name)?.trimmingCharacters(in: .whitespaces), !value.isEmpty else { return nil }
        return value
    }
}

/// An answer: JSON, built by the simulator or relayed as a seller sent it.
struct SimulatorResponse: Sendable {
    var status: HTTPResponseStatus
    /// Extra fields (`retry-after`); content-type and content-length are added when written.
    var headers: [(name: String, value: String)]
    /// The document; for a relayed answer, what its bytes parse to (`.null` when they do not).
    var body: JSONValue
    /// A relayed seller answer's bytes, written as they came (key order, number forms and
    /// all); nil for the simulator's own answers, which are `body` rendered.
    var relayedBytes: Data?

    init(_ status: HTTPResponseStatus, _ body: JSONValue, headers: [(name: String, value: String)] = []) {
        self.status = status
        self.headers = headers
        self.body = body
        self.relayedBytes = nil
    }

    /// A seller's JSON answer, relayed byte for byte.
    static func relayed(_ status: HTTPResponseStatus, bytes: Data, headers: [(name: String, value: String)] = []) -> SimulatorResponse {
        var response = SimulatorResponse(status, JSONValue.parse(bytes) ?? .null, headers: headers)
        response.relayedBytes = bytes
        return response
    }

    /// The seed's error body: `{"success":false,"error":{"code":…,"message":…}}`, then any
    /// `extra` members (the gateway's payment context).
    static func error(
        _ status: HTTPResponseStatus,
        _ code: String,
        _ message: String,
        headers: [(name: String, value: String)] = [],
        extra: [(key: String, value: JSONValue)] = []
    ) -> SimulatorResponse {
        SimulatorResponse(
            status,
            .object(
                [
                    ("success", .bool(false)),
                    ("error", .object([("code", .string(code)), ("message", .string(message))])),
                ] + extra
            ),
            headers: headers
        )
    }

    /// `{"success":true,"data":…}`.
    static func success(_ data: JSONValue) -> SimulatorResponse {
        SimulatorResponse(.ok, .object([("success", .bool(true)), ("data", data)]))
    }

    /// The value of the first header named `name` (case-insensitive).
    func header(_ name: String) -> String? {
        self.headers.first { $0.name.caseInsensitiveCompare(name) == .orderedSame }?.value
    }

    /// The bytes to write.
    var bytes: Data {
        self.relayedBytes ?? Data(self.body.rendered.utf8)
    }
}

/// What the channel handler does with a call to a seed endpoint, decided on its arrival.
struct SimulatorPlan: Sendable {
    /// What happens once `latency` has passed.
    enum Outcome: Sendable {
        /// Answer this (an injected fault's status).
        case respond(SimulatorResponse)
        /// Close the connection without answering, nothing applied (an injected fault).
        case drop
        /// Never answer and keep the connection open, nothing applied (an injected fault).
        case hang
        /// Serve the call normally, against the state at that moment.
        case serve(SimulatedEndpoint)
        /// Serve the call, so that whatever it changes is committed, then close the
        /// connection without the answer (an injected fault: an answer lost in flight).
        case serveThenDrop(SimulatedEndpoint)
    }

    /// An injected fault's delay; nil to go on at once.
    var latency: Duration?
    var outcome: Outcome
}

/// What serving a call comes to: an answer now, or a call to a seller's endpoint first
/// (the gateway), whose outcome `SimulatorStore.finishForward` turns into the answer.
enum SimulatorAction: Sendable {
    /// Answer this.
    case respond(SimulatorResponse)
    /// Call the seller's endpoint first; `SimulatorStore.finishForward` makes the answer.
    case forward(GatewayForward)
}
