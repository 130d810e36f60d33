import Foundation
import NIOCore
import SubgateCore

// Crovver's `POST {crovver_url}/credits/consume` (seed 002), over the same pooled client,
// timeouts and `subgate_control_plane_requests_total{endpoint="consume"}` as the Crochet
// calls. For `backend = crovver` the client is built with `crovver_url` and `crovver_key`.
extension ControlPlaneClient {
    /// Consumes `batch.units` credits of its pool under `idempotencyKey`. `metadata` carries
    /// the endpoint path and the request id of the (last) request the credits are for.
    public func consume(_ batch: CrovverBatch, idempotencyKey: String) async -> CrovverConsumeOutcome {
        let body = "{\"tenantId\":\(JSONString.quote(batch.key.tenant)),\"poolKey\":\(JSONString.quote(batch.key.pool)),"
            + "\"amount\":\(batch.units),\"idempotencyKey\":\(JSONString.quote(idempotencyKey)),"
            + "\"metadata\":{\"endpoint\":\(JSONString.quote(batch.endpoint)),\"requestId\":\(JSONString.quote(batch.requestID)),\"source\":\"subgate\"}}"
        let answer = await self.post(.consume, path: "/credits/consume", body: body)
        switch answer {
        case .notSent(let reason):
            return .failed(reason: reason)
        case .noAnswer(let reason):
            return .unknown(reason: reason)
        case .answered(let status, let headers, let body):
            switch status {
            case 200..<300:
                guard let data = Self.object(body)?["data"] as? [String: Any],
                    let resultText = data["result"] as? String, let result = CrovverResult(rawValue: resultText),
                    let remaining = data["remaining"] as? Int
                else {
                    // Applied or not, nobody can tell: the same key is retried.
                    return .unknown(reason: "consume answered \(status) with a body that is not the seed's shape")
                }
                return .answered(result: result, remaining: remaining, alreadyProcessed: data["alreadyProcessed"] as? Bool ?? false)
            case 401, 403:
                return .unauthorized
            case 429:
                return .rateLimited(retryAfter: RetryAfter.parse(headers.first(name: "retry-after"), now: Date()))
            case 408:
                // Request Timeout: the server gave up reading it; it may be sent again as it is.
                return .unknown(reason: "consume answered 408")
            case 400..<500:
                // Any other 4xx (400, 404, 409, 422, …) refuses this request as it stands: the
                // same key and body would get the same answer forever, so retrying it would
                // only wedge the pool's batches behind it.
                return .rejected(status: status)
            default:
                // A 5xx may have been applied before it failed: the same key is retried.
                return .unknown(reason: "consume answered \(status)")
            }
        }
    }
}
