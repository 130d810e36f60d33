import AsyncHTTPClient
import Foundation
import NIOCore
import SubgateSimulator
import Testing

/// Seed 000's own example requests over real loopback sockets, answers checked field by
/// field, and every status of the seed's error table.
extension SimulatorHTTPTests {
    /// The seed's verify and usage bodies as its curl lines send them, with a real hash.
    static func seedVerifyBody(_ hash: String) -> String {
        "{\n\"token_hash\": \"\(hash)\"\n}"
    }

    static func seedUsageBody(_ hash: String, count: Int = 1) -> String {
        "{\n\"token_hash\": \"\(hash)\",\n\"count\": \(count)\n}"
    }

    /// The keys of a JSON object in the order the answer wrote them.
    static func keyOrder(_ body: String, of object: String? = nil) -> [String] {
        let text: Substring
        if let object, let range = body.range(of: "\"\(object)\":{") {
            text = body[range.upperBound...]
        } else {
            text = Substring(body.dropFirst())
        }
        var keys: [String] = []
        var depth = 0
        var index = text.startIndex
        var expectKey = true
        while index < text.endIndex {
            let character = text[index]
            switch character {
            case "{", "[": depth += 1
            case "}", "]":
                if depth == 0 { return keys }
                depth -= 1
            case ",": if depth == 0 { expectKey = true }
            case "\"":
                let end = text[text.index(after: index)...].firstIndex(of: "\"") ?? text.endIndex
                if depth == 0 && expectKey {
                    keys.append(String(text[text.index(after: index)..<end]))
                    expectKey = false
                }
                index = end
            default: break
            }
            if index < text.endIndex { index = text.index(after: index) }
        }
        return keys
    }

    @Test("seed 000 verify example: valid:true with data's seven fields in the seed's order and types; bare valid:false otherwise")
    func seedVerifyExample() async throws {
        try await Self.withSimulator { simulator in
            let expiry = Date(timeIntervalSince1970: 1_776_384_000)
            let (_, hash) = simulator.createToken(usageLimit: 100, usageCount: 47, expiresAt: expiry.addingTimeInterval(86_400 * 3650), listingID: "lst_seed", subscriberID: "usr_seed")
            let answer = try await Self.send(simulator.baseURL + "/subscriptions/tokens/verify", json: Self.seedVerifyBody(hash))
            #expect(answer.status == 200 && answer.headers["content-type"] == "application/json")
            #expect(Self.keyOrder(answer.body) == ["valid", "data"], "\(answer.body)")
            #expect(Self.keyOrder(answer.body, of: "data") == ["listing_id", "status", "usage_count", "usage_limit", "remaining", "expires_at", "subscriber_id"], "\(answer.body)")
            let data = answer.json["data"] as? [String: Any] ?? [:]
            #expect(answer.json["valid"] as? Bool == true)
            #expect(data["listing_id"] as? String == "lst_seed" && data["status"] as? String == "active" && data["subscriber_id"] as? String == "usr_seed")
            #expect(data["usage_count"] as? Int == 47 && data["usage_limit"] as? Int == 100 && data["remaining"] as? Int == 53)
            #expect((data["expires_at"] as? String)?.range(of: #"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$"#, options: .regularExpression) != nil, "the seed's time form: \(data["expires_at"] ?? "nil")")
            let unknown = try await Self.send(simulator.baseURL + "/subscriptions/tokens/verify", json: Self.seedVerifyBody(String(repeating: "a1", count: 32)))
            #expect(unknown.status == 200 && unknown.body == #"{"valid":false}"#, "no extra details: \(unknown.body)")
            let unlimited = simulator.createToken(usageLimit: nil).hash
            let open = try await Self.send(simulator.baseURL + "/subscriptions/tokens/verify", json: Self.seedVerifyBody(unlimited))
            #expect(open.body.contains(#""usage_limit":null,"remaining":null"#), "null is unlimited: \(open.body)")
        }
    }

    @Test("seed 000 usage example: success with data's five fields in order; auto-expiry at the limit; later reports 403")
    func seedUsageExample() async throws {
        try await Self.withSimulator { simulator in
            let (_, hash) = simulator.createToken(usageLimit: 100, usageCount: 47)
            let answer = try await Self.send(simulator.baseURL + "/subscriptions/tokens/usage", json: Self.seedUsageBody(hash))
            #expect(answer.status == 200)
            #expect(Self.keyOrder(answer.body) == ["success", "data"] && Self.keyOrder(answer.body, of: "data") == ["token_id", "usage_count", "usage_limit", "remaining", "status"], "\(answer.body)")
            let data = answer.json["data"] as? [String: Any] ?? [:]
            #expect((data["token_id"] as? String)?.hasPrefix("tok_") == true && data["usage_count"] as? Int == 48 && data["usage_limit"] as? Int == 100)
            #expect(data["remaining"] as? Int == 52 && data["status"] as? String == "active")
            let batch = try await Self.send(simulator.baseURL + "/subscriptions/tokens/usage", json: Self.seedUsageBody(hash, count: 52))
            #expect((batch.json["data"] as? [String: Any])?["status"] as? String == "expired", "usage_count reached usage_limit: \(batch.body)")
            let after = try await Self.send(simulator.baseURL + "/subscriptions/tokens/usage", json: Self.seedUsageBody(hash))
            #expect(after.status == 403 && after.errorCode == "FORBIDDEN", "usage on an expired token: \(after.body)")
            #expect(simulator.acceptedUnits(hash: hash) == 53)
        }
    }

    @Test("seed 000 error table over sockets: 400, 401, 403, 404, 429 (Retry-After) and 500, each in the seed's error body")
    func seedErrorTable() async throws {
        try await Self.withSimulator(ratePerMinute: 5) { simulator in
            let mine = simulator.createToken().hash
            let theirs = simulator.createToken(sellerKey: "am_k_other").hash
            let usage = simulator.baseURL + "/subscriptions/tokens/usage"
            var answers: [(Int, Answer)] = []
            answers.append((400, try await Self.send(usage, json: #"{"count":1}"#)))
            answers.append((401, try await Self.send(usage, key: "am_k_unknown", json: Self.seedUsageBody(mine))))
            answers.append((403, try await Self.send(usage, json: Self.seedUsageBody(theirs))))
            answers.append((404, try await Self.send(usage, json: Self.seedUsageBody(String(repeating: "0", count: 64)))))
            simulator.injectFault(SimulatedFault(endpoint: .usage, status: 500, times: 1))
            answers.append((500, try await Self.send(usage, json: Self.seedUsageBody(mine))))
            answers.append((200, try await Self.send(usage, json: Self.seedUsageBody(mine))))
            answers.append((200, try await Self.send(usage, json: Self.seedUsageBody(mine))))
            answers.append((429, try await Self.send(usage, json: Self.seedUsageBody(mine))))
            let codes = [400: "BAD_REQUEST", 401: "UNAUTHORIZED", 403: "FORBIDDEN", 404: "NOT_FOUND", 429: "RATE_LIMITED", 500: "INTERNAL_ERROR"]
            for (status, answer) in answers {
                #expect(answer.status == status, "expected \(status): \(answer.body)")
                guard let code = codes[status] else { continue }
                #expect(Self.keyOrder(answer.body) == ["success", "error"] && Self.keyOrder(answer.body, of: "error") == ["code", "message"], "\(answer.body)")
                #expect(answer.json["success"] as? Bool == false && answer.errorCode == code, "\(status): \(answer.body)")
            }
            #expect(answers[0].1.body == #"{"success":false,"error":{"code":"BAD_REQUEST","message":"token_hash is required and must be a non-empty string"}}"#, "the seed's example error body")
            #expect(answers.last?.1.headers["retry-after"].flatMap(Int.init).map { (1...60).contains($0) } == true, "429 carries Retry-After seconds")
        }
    }
}
