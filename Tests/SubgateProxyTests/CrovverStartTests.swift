import Foundation
import Logging
import SubgateCore
import Testing

@testable import SubgateProxy

/// `backend = crovver` at start: a journal whose open batches cannot be sent again under their
/// own keys refuses to start instead of minting new keys (which could deduct twice).
@Suite("Crovver start-up")
struct CrovverStartTests {
    @Test("open Crovver batches without the journal's sidecar id (a lost I line) refuse to start, naming the problem")
    func lostIdentityRefusesStart() async throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("subgate-crovver-\(UUID().uuidString).journal").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        var bytes: [UInt8] = []
        let batch = CrovverBatch(sequence: 17, key: CrovverPoolKey(tenant: "t", pool: "api_calls"), units: 400, endpoint: "/x", requestID: "r")
        #expect(JournalCodec.encode(.crovverBatchOpened(batch), into: &bytes))
        FileManager.default.createFile(atPath: path, contents: Data(bytes))
        var config = Config()
        config.backend = .crovver
        config.crovverKey = Secret("sk_test_demo")
        config.crovverURL = "http://127.0.0.1:9/api/public"
        config.usageJournal = path
        do {
            let (enforcer, _) = try await EnforcementSetup.make(config: config, readiness: Readiness(), logger: Logger(label: "test"))
            await enforcer.client.shutdown()
            Issue.record("started with an open batch and no sidecar id")
        } catch {
            #expect("\(error)".contains("lost the sidecar id"), "the refusal says why: \(error)")
        }
    }

    @Test("crovver_amount is bounded by what one consume may carry")
    func amountBounded() {
        let base = "upstream = http://127.0.0.1:3000\nbackend = crovver\ncrovver_key = sk_x\n"
        #expect((try? ConfigParser.parse(base + "crovver_amount = 1000000\n", file: "t", environment: [:], readFile: { _ in "" }).get()) != nil)
        #expect((try? ConfigParser.parse(base + "crovver_amount = 1000001\n", file: "t", environment: [:], readFile: { _ in "" }).get()) == nil)
    }
}
