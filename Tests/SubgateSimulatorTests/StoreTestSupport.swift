import Crypto
import Foundation
import NIOHTTP1
@testable import SubgateSimulator

/// A fixed start for the store's clock; tests move `now` instead of sleeping.
let t0 = Date(timeIntervalSince1970: 1_776_000_000)

func sha256Hex(_ text: String) -> String {
    SHA256.hash(data: Data(text.utf8)).map { String(format: "%02x", $0) }.joined()
}

/// A POST to a seed endpoint with a seller key (nil: no Authorization field).
func apiCall(_ endpoint: SimulatedEndpoint, key: String? = "am_k_demo", _ json: String) -> SimulatorRequest {
    SimulatorRequest(post: endpoint.path, authorization: key.map { "Bearer \($0)" }, json: json)
}

func verifyCall(_ hash: String, key: String? = "am_k_demo") -> SimulatorRequest {
    apiCall(.verify, key: key, #"{"token_hash":"\#(hash)"}"#)
}

func usageCall(_ hash: String, _ count: Int, key: String? = "am_k_demo") -> SimulatorRequest {
    apiCall(.usage, key: key, #"{"token_hash":"\#(hash)","count":\#(count)}"#)
}

func adminCall(_ method: HTTPMethod, _ path: String, _ json: String = "") -> SimulatorRequest {
    SimulatorRequest(method: method, path: path, body: Data(json.utf8))
}

/// A `SimulatorStore` in a box, so that `#expect` can call its mutating methods; its
/// properties, and its Crochet store's, read through (`store.faults`, `store.tokens`).
@dynamicMemberLookup
final class StoreHarness {
    var store: SimulatorStore

    init(ratePerMinute: Int = 300, now: Date = t0) {
        self.store = SimulatorStore(ratePerMinute: ratePerMinute, now: now)
    }

    subscript<Value>(dynamicMember keyPath: KeyPath<SimulatorStore, Value>) -> Value {
        self.store[keyPath: keyPath]
    }

    subscript<Value>(dynamicMember keyPath: KeyPath<CrochetStore, Value>) -> Value {
        self.store.crochet[keyPath: keyPath]
    }

    /// What the handler would do with a request at `now`, latency ignored: the answer, or
    /// status 0 when the connection would be dropped, hung or closed after the commit. A
    /// gateway forward is answered by `seller` (by default: no seller answers).
    func call(
        _ request: SimulatorRequest,
        at now: Date,
        seller: (GatewayForward) -> SellerOutcome = { _ in .failed("no seller in this test") }
    ) -> SimulatorResponse {
        let unanswered = SimulatorResponse(HTTPResponseStatus(statusCode: 0), .null)
        switch self.store.plan(request, now: now).outcome {
        case .respond(let response): return response
        case .drop, .hang: return unanswered
        case .serve(let endpoint): return self.serve(endpoint, request, at: now, seller: seller)
        case .serveThenDrop(let endpoint):
            _ = self.serve(endpoint, request, at: now, seller: seller)
            return unanswered
        }
    }

    private func serve(_ endpoint: SimulatedEndpoint, _ request: SimulatorRequest, at now: Date, seller: (GatewayForward) -> SellerOutcome) -> SimulatorResponse {
        switch self.store.serve(endpoint, request, now: now) {
        case .respond(let response): return response
        case .forward(let forward): return self.store.finishForward(forward, seller(forward), now: now)
        }
    }

    func plan(_ request: SimulatorRequest, now: Date) -> SimulatorPlan {
        self.store.plan(request, now: now)
    }

    func createToken(
        sellerKey: String = "am_k_demo",
        listingID: String = "lst_demo",
        subscriberID: String = "usr_demo",
        usageLimit: Int? = 100,
        usageCount: Int = 0,
        expiresAt: Date? = nil,
        status: String = "active"
    ) -> (token: String, hash: String) {
        self.store.crochet.createToken(
            sellerKey: sellerKey,
            listingID: listingID,
            subscriberID: subscriberID,
            usageLimit: usageLimit,
            usageCount: usageCount,
            expiresAt: expiresAt,
            status: status
        )
    }

    func token(hash: String, now: Date) -> SimulatedToken? {
        self.store.crochet.token(hash: hash, now: now)
    }

    func callLog(_ endpoint: SimulatedEndpoint) -> EndpointCallLog {
        self.store.callLog(endpoint)
    }

    func injectFault(_ fault: SimulatedFault) {
        self.store.injectFault(fault)
    }

    func clearFaults() {
        self.store.clearFaults()
    }
}

extension SimulatorResponse {
    var code: Int { Int(self.status.code) }
    var errorCode: String? { self.body["error"]?["code"]?.stringValue }
    var data: JSONValue? { self.body["data"] }
    var rendered: String { self.body.rendered }
}
