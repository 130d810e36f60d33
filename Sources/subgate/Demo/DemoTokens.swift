import Foundation
import NIOCore
import SubgateProxy
import SubgateSimulator

/// The demo's four buyers, one per case a seller should see (issue 3 / SPEC §1).
struct DemoTokens: Sendable {
    static let sellerKey = "am_k_demo"
    /// The Crovver tenant the demo creates (its `api_calls` pool: 5 base credits and a
    /// 3-credit add-on, hard limit) and the simulator's demo service key.
    static let crovverTenant = "demo_workspace"
    static let crovverKey = "sk_test_demo"

    var healthy: String
    var threeLeft: String
    var expiring: String
    var expiresAt: Date
    var revoked: String

    static func create(in simulator: Simulator, expiresAt: Date) -> DemoTokens {
        let healthy = simulator.createToken(sellerKey: sellerKey, usageLimit: 1_000, subscriberID: "usr_demo_healthy")
        let threeLeft = simulator.createToken(sellerKey: sellerKey, usageLimit: 10, usageCount: 7, subscriberID: "usr_demo_three_left")
        let expiring = simulator.createToken(sellerKey: sellerKey, usageLimit: 1_000, expiresAt: expiresAt, subscriberID: "usr_demo_expiring")
        let revoked = simulator.createToken(sellerKey: sellerKey, usageLimit: 1_000, subscriberID: "usr_demo_revoked")
        simulator.revoke(hash: revoked.hash)
        _ = simulator.createTenant(SimulatedTenant(tenantID: crovverTenant, plan: "demo", pools: [
            SimulatedCreditPool(poolKey: "api_calls", limit: .hard, credits: 5, addons: [(credits: 3, expiresAt: nil)]),
        ]))
        return DemoTokens(healthy: healthy.token, threeLeft: threeLeft.token, expiring: expiring.token, expiresAt: expiresAt, revoked: revoked.token)
    }

    /// What the demo prints once it listens: where everything is, the tokens, and a `curl`
    /// line per case. Tests read the `name  token` lines and the `proxy` line.
    static func banner(_ tokens: DemoTokens, proxy: SocketAddress, admin: SocketAddress, simulator: String, upstreamPort: Int, expiringAfter: Int) -> String {
        let url = "http://\(proxy.hostPort)"
        let adminURL = "http://\(admin.hostPort)"
        func curl(_ token: String?, _ path: String = "/v1/quote") -> String {
            let header = token.map { "-H 'x-subscription-token: \($0)' " } ?? ""
            return "curl -i \(header)\(url)\(path)"
        }
        return """

            Subgate demo: everything below runs in this process, on loopback.
              proxy      \(url)   <- buyers call this
              upstream   http://127.0.0.1:\(upstreamPort)   the demo seller API: GET /v1/quote, GET /v1/events (SSE), POST /v1/echo
              simulator  \(simulator)   the Crochet control plane (seller key \(sellerKey)); admin API under /_sim/
              admin      \(adminURL)   /healthz /readyz /status /metrics, POST /flush

            Demo tokens:
              healthy     \(tokens.healthy)   1000 uses
              three-left  \(tokens.threeLeft)   3 uses left, then 429 USAGE_LIMIT_REACHED
              expiring    \(tokens.expiring)   expires \(tokens.expiresAt.formatted(.iso8601)) (\(expiringAfter) s after start), then 403 TOKEN_EXPIRED
              revoked     \(tokens.revoked)   403 TOKEN_INVALID

            Try:
              \(curl(tokens.healthy))
              \(curl(tokens.threeLeft))      # run it 4 times
              \(curl(tokens.expiring))
              \(curl(tokens.revoked))
              \(curl(nil))      # no token: 401 MISSING_TOKEN
              curl -N -H 'x-subscription-token: \(tokens.healthy)' \(url)/v1/events      # SSE, streamed
              curl -s -X POST \(adminURL)/flush; curl -s \(simulator)/_sim/usage      # what the control plane was told

            Crovver credit pools (the simulator's API; Subgate's backend = crovver is not in this demo):
              tenant      \(crovverTenant)   pool api_calls: 5 base credits, then a 3-credit add-on, hard limit
              curl -s -X POST \(simulator)/api/public/credits/consume -H 'Authorization: Bearer \(crovverKey)' -H 'content-type: application/json' -d '{"tenantId":"\(crovverTenant)","poolKey":"api_calls","amount":1,"idempotencyKey":"demo-1"}'
              curl -s \(simulator)/_sim/tenants/\(crovverTenant)      # its balance and every consume

            Ctrl-C reports the buffered usage and exits.

            """
    }
}
