import NIOCore
import Testing

@testable import SubgateBenchCore

/// Issue 5: the generator's options are checked before anything is sent; the bench stays
/// on loopback and bounded in time.
@Suite("Load plan: argument validation")
struct LoadPlanTests {
    func options(_ change: (inout LoadOptions) -> Void = { _ in }) -> LoadOptions {
        var options = LoadOptions()
        options.url = "http://127.0.0.1:18083/"
        options.tokensAvailable = 10
        change(&options)
        return options
    }

    func problem(_ change: (inout LoadOptions) -> Void) -> String? {
        do {
            _ = try LoadPlan(self.options(change))
            return nil
        } catch {
            return error.message
        }
    }

    @Test("the defaults make a closed loop of 64 connections, 10 s after 2 s, one hot token")
    func defaults() throws {
        let plan = try LoadPlan(self.options())
        #expect(plan.loop == .closed)
        #expect(plan.connections == 64)
        #expect(plan.duration == .seconds(10))
        #expect(plan.warmup == .seconds(2))
        #expect(plan.mix.selection == .hot)
        #expect(plan.target == BenchTarget(host: "127.0.0.1", port: 18083, path: "/"))
        #expect(plan.unitsPerBillableAnswer == 1)
    }

    @Test("--rate makes an open loop over the connections")
    func openLoop() throws {
        let plan = try LoadPlan(self.options { $0.rate = 5000; $0.connections = 10 })
        #expect(plan.loop == .open(OpenLoopSchedule(rate: 5000, connections: 10)))
        #expect(self.problem { $0.rate = 0 }?.contains("--rate") == true)
        #expect(self.problem { $0.rate = -3 }?.contains("--rate") == true)
        #expect(self.problem { $0.rate = .infinity }?.contains("--rate") == true)
    }

    @Test("targets off this machine are refused; loopback forms are accepted")
    func loopbackOnly() {
        #expect(self.problem { $0.url = "http://10.0.0.1:80/" }?.contains("not on this machine") == true)
        #expect(self.problem { $0.url = "http://example.com:80/" }?.contains("not on this machine") == true)
        #expect(self.problem { $0.url = "https://127.0.0.1:443/" }?.contains("http://") == true)
        #expect(self.problem { $0.url = "http://127.0.0.1/" }?.contains("port") == true)
        #expect(self.problem { $0.url = "http://127.0.0.1:70000/" }?.contains("port") == true)
        #expect(self.problem { $0.url = "http://127.1.2.3:8080/x?y=1" } == nil)
        #expect(self.problem { $0.url = "http://localhost:8080" } == nil)
        #expect(self.problem { $0.url = "http://[::1]:8080/" } == nil)
        #expect(BenchTarget.isLoopback("127.0.0.256") == false)
    }

    @Test("durations parse with units and are bounded")
    func durations() {
        #expect(BenchDuration.parse("10s") == .seconds(10))
        #expect(BenchDuration.parse("500ms") == .milliseconds(500))
        #expect(BenchDuration.parse("2m") == .seconds(120))
        #expect(BenchDuration.parse("1.5s") == .milliseconds(1500))
        #expect(BenchDuration.parse("3") == .seconds(3))
        #expect(BenchDuration.parse("10x") == nil)
        #expect(BenchDuration.parse("-1s") == nil)
        #expect(self.problem { $0.duration = "ten" }?.contains("--duration") == true)
        #expect(self.problem { $0.duration = "0s" }?.contains("longer than zero") == true)
        #expect(self.problem { $0.duration = "2h" }?.contains("at most 1h") == true)
        #expect(self.problem { $0.warmup = "0s" } == nil)
    }

    @Test("shares are fractions that add up to at most 1")
    func shares() {
        #expect(self.problem { $0.invalidShare = 1.5 }?.contains("--invalid-share") == true)
        #expect(self.problem { $0.noTokenShare = -0.1 }?.contains("--no-token-share") == true)
        #expect(self.problem { $0.invalidShare = 0.6; $0.noTokenShare = 0.5 }?.contains("must not exceed 1") == true)
        #expect(self.problem { $0.invalidShare = 0.5; $0.noTokenShare = 0.5; $0.tokensAvailable = 0 } == nil)
    }

    @Test("valid tokens are required unless every request is invalid or tokenless")
    func tokensRequired() {
        #expect(self.problem { $0.tokensAvailable = 0 }?.contains("--tokens-file") == true)
        #expect(self.problem { $0.tokenCount = 11 }?.contains("more tokens than the 10 available") == true)
        #expect(self.problem { $0.tokenCount = 0 }?.contains("--token-count") == true)
        #expect(self.problem { $0.mix = "zipfian" }?.contains("unknown") == true)
        #expect(self.problem { $0.mix = "zipf"; $0.zipfExponent = -1 }?.contains("--zipf-exponent") == true)
    }

    @Test("connections, threads and sizes are bounded")
    func bounds() {
        #expect(self.problem { $0.connections = 0 }?.contains("--connections") == true)
        #expect(self.problem { $0.threads = 4; $0.connections = 2 }?.contains("--threads") == true)
        #expect(self.problem { $0.requestBytes = -1 }?.contains("--request-bytes") == true)
        #expect(self.problem { $0.usagePerAnswer = 1_000_001 }?.contains("--usage") == true)
        #expect(self.problem { $0.tokenHeader = "bad header" }?.contains("--token-header") == true)
    }
}

@Suite("Token mix and request catalog")
struct TokenMixTests {
    @Test("shares of invalid and tokenless requests are respected; valid ones follow the selection")
    func shares() {
        let mix = TokenMix(selection: .hot, validTokens: 1, invalidShare: 0.2, noTokenShare: 0.1, invalidTokens: 50)
        var picker = TokenPicker(mix: mix, seed: 3)
        var none = 0
        var invalid = Set<Int>()
        var invalidCount = 0
        var valid = 0
        for _ in 0..<100_000 {
            switch picker.next() {
            case .noToken?: none += 1
            case .invalid(let i)?: invalid.insert(i); invalidCount += 1
            case .valid(let i)?: #expect(i == 0); valid += 1
            case nil: Issue.record("hot never runs out")
            }
        }
        #expect(abs(Double(none) / 100_000 - 0.1) < 0.01)
        #expect(abs(Double(invalidCount) / 100_000 - 0.2) < 0.01)
        #expect(invalid.count == 50)
        #expect(valid > 65_000)
    }

    @Test("cold: every token once, split between loops without overlap, then nil")
    func sequential() {
        let mix = TokenMix(selection: .sequential, validTokens: 10)
        var a = TokenPicker(mix: mix, seed: 1, stream: 0, streams: 2)
        var b = TokenPicker(mix: mix, seed: 1, stream: 1, streams: 2)
        var seen: [Int] = []
        while case .valid(let i)? = a.next() { seen.append(i) }
        while case .valid(let i)? = b.next() { seen.append(i) }
        #expect(seen.sorted() == Array(0..<10))
        #expect(a.next() == nil)
    }

    @Test("requests are encoded once, exactly, with the token header and the bench headers")
    func catalog() throws {
        var options = LoadOptions()
        options.url = "http://127.0.0.1:9/v1/x?q=1"
        options.tokensAvailable = 2
        options.answerBytes = 512
        options.usagePerAnswer = 3
        options.requestBytes = 4
        options.invalidShare = 0.5
        let plan = try LoadPlan(options)
        let catalog = RequestCatalog(plan: plan, validTokens: ["cro_sub_a", "cro_sub_b"], invalidTokens: ["cro_sub_bad"])
        let text = { (pick: TokenMix.Pick) in String(buffer: catalog.request(pick)) }
        let tail = "x-bench-answer-bytes: 512\r\nx-bench-usage: 3\r\ncontent-type: application/octet-stream\r\ncontent-length: 4\r\n\r\nxxxx"
        let head = "POST /v1/x?q=1 HTTP/1.1\r\nhost: 127.0.0.1:9\r\nuser-agent: subgate-bench\r\n"
        #expect(text(.valid(1)) == head + "x-subscription-token: cro_sub_b\r\n" + tail)
        #expect(text(.invalid(0)) == head + "x-subscription-token: cro_sub_bad\r\n" + tail)
        #expect(text(.noToken) == head + tail)
        #expect(InvalidTokens.make(count: 3, seed: 1) == InvalidTokens.make(count: 3, seed: 1))
        #expect(InvalidTokens.make(count: 1, seed: 1)[0].count == "cro_sub_".count + 32)
    }

    @Test("billable: a 2xx or 3xx answer to a valid token, nothing else")
    func billable() {
        var tally = LoadTally()
        tally.answer(status: 200, validToken: true, latencyNanoseconds: 1000, measured: true, inWindow: true)
        tally.answer(status: 304, validToken: true, latencyNanoseconds: 1000, measured: false, inWindow: false)
        tally.answer(status: 200, validToken: false, latencyNanoseconds: 1000, measured: true, inWindow: true)
        tally.answer(status: 429, validToken: true, latencyNanoseconds: 1000, measured: true, inWindow: true)
        tally.answer(status: 503, validToken: true, latencyNanoseconds: 1000, measured: true, inWindow: false)
        #expect(tally.billable == 2)
        #expect(tally.responses == 5)
        #expect(tally.completedInWindow == 3)
        #expect(tally.latency.totalCount == 4)
        #expect(tally.measuredStatuses[200] == 2 && tally.measuredStatuses[429] == 1)
    }

    @Test("billable per token: counted per valid token when tracked, merged element-wise, nothing when not tracked")
    func billablePerToken() {
        var untracked = LoadTally()
        untracked.answer(status: 200, validToken: true, latencyNanoseconds: 1, measured: true, inWindow: true, token: 0)
        #expect(untracked.billable == 1 && untracked.billablePerToken.isEmpty, "untracked tallies must not grow a per-token array")

        var a = LoadTally()
        a.trackBillablePerToken(count: 3)
        a.answer(status: 200, validToken: true, latencyNanoseconds: 1, measured: true, inWindow: true, token: 2)
        a.answer(status: 302, validToken: true, latencyNanoseconds: 1, measured: true, inWindow: true, token: 2)
        a.answer(status: 429, validToken: true, latencyNanoseconds: 1, measured: true, inWindow: true, token: 1)
        a.answer(status: 200, validToken: false, latencyNanoseconds: 1, measured: true, inWindow: true, token: -1)
        var b = LoadTally()
        b.trackBillablePerToken(count: 3)
        b.answer(status: 204, validToken: true, latencyNanoseconds: 1, measured: true, inWindow: true, token: 0)
        b.answer(status: 200, validToken: true, latencyNanoseconds: 1, measured: true, inWindow: true, token: 2)
        a.merge(b)
        #expect(a.billablePerToken == [1, 0, 3], "per-token counts after merge: \(a.billablePerToken)")
        #expect(a.billable == a.billablePerToken.reduce(0, +), "per-token counts must add up to billable")
    }

    @Test("numbers print without Foundation")
    func formatting() {
        #expect(ReportFormat.fixed(1.005, digits: 1) == "1.0")
        #expect(ReportFormat.fixed(-2.5, digits: 2) == "-2.50")
        #expect(ReportFormat.grouped(1_234_567) == "1 234 567")
        #expect(ReportFormat.latency(85.2) == "85µs")
        #expect(ReportFormat.latency(1240) == "1.24ms")
        #expect(ReportFormat.ratio(50, 100) == "0.50×")
        #expect(ReportFormat.trimmed(0.05 * 100) == "5")
    }
}
