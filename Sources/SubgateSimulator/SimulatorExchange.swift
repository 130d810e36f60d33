import Foundation
import NIOHTTP1

/// A request as the channel handler collected it (bodies are small JSON documents).
struct SimulatorRequest: Sendable {
    var method: HTTPMethod
    /// The path, without the query.
    var path: String
    /// The `Authorization` field, if any.
    var authorization: String?
    var body: Data

    init(method: HTTPMethod, path: String, authorization: String? = nil, body: Data = Data()) {
        self.method = method
        self.path = path
        self.authorization = authorization
        self.body = body
    }

    /// A POST with a JSON body, for tests and the Swift API.
    init(post path: String, authorization: String? = nil, json: String) {
        self.init(method: .POST, path: path, authorization: authorization, body: Data(json.utf8))
    }
}

/// An answer: always JSON.
struct SimulatorResponse: Sendable {
    var status: HTTPResponseStatus
    /// Extra fields (`retry-after`); content-type and content-length are added when written.
    var headers: [(name: String, value: String)]
    var body: JSONValue

    init(_ status: HTTPResponseStatus, _ body: JSONValue, headers: [(name: String, value: String)] = []) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    /// The seed's error body: `{"success":false,"error":{"code":…,"message":…}}`.
    static func error(
        _ status: HTTPResponseStatus,
        _ code: String,
        _ message: String,
        headers: [(name: String, value: String)] = []
    ) -> SimulatorResponse {
        SimulatorResponse(
            status,
            .object([
                ("success", .bool(false)),
                ("error", .object([("code", .string(code)), ("message", .string(message))])),
            ]),
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
}

/// What the channel handler does with a call to a seed endpoint, decided on its arrival.
struct SimulatorPlan: Sendable {
    /// What happens once `latency` has passed.
    enum Outcome: Sendable {
        /// Answer this (an injected fault's status).
        case respond(SimulatorResponse)
        /// Close the connection without answering (an injected fault).
        case drop
        /// Serve the call normally, against the state at that moment.
        case serve(SimulatedEndpoint)
    }

    /// An injected fault's delay; nil to go on at once.
    var latency: Duration?
    var outcome: Outcome
}
