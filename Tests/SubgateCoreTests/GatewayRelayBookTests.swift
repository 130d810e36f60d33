import NIOHTTP1
import Testing

@testable import SubgateCore

/// The decisions behind gateway-relayed calls (SPEC §6) without sockets: `RelayBook`,
/// `GatewayRelay.classify`, the fee model and the relay configuration keys.
@Suite("Gateway relay decisions")
struct GatewayRelayBookTests {
    static func record(_ id: String, body: String = "h1", at time: Double, answer: RelayAnswer? = RelayAnswer(status: 200, headers: [], body: Array("ok".utf8))) -> RelayRecord {
        RelayRecord(relayID: id, request: "POST /run", bodyHash: body, recordedAt: time, answer: answer)
    }

    @Test("first sighting forwards; a repeat in flight is in progress; after completion it is recorded; abandon forgets")
    func lifecycle() {
        var book = RelayBook(ttl: .seconds(60), maxEntries: 10)
        #expect(book.admit("a", now: 0) == .forward)
        #expect(book.admit("a", now: 1) == .inProgress, "the first call has not been answered")
        book.complete(Self.record("a", at: 2))
        #expect(book.admit("a", now: 3) == .recorded(Self.record("a", at: 2)))
        #expect(book.admit("b", now: 3) == .forward)
        book.abandon("b")
        #expect(book.admit("b", now: 4) == .forward, "an abandoned call is forwarded again")
        #expect(book.inFlightCount == 1 && book.count == 1)
    }

    @Test("the same body replays; another body is a mismatch; an answer that was too large is not replayable")
    func replay() {
        let answer = RelayAnswer(status: 201, headers: [.init(name: "content-type", value: "application/json")], body: Array("{}".utf8))
        #expect(RelayBook.replay(Self.record("a", body: "h1", at: 0, answer: answer), request: "POST /run", bodyHash: "h1") == .answer(answer))
        #expect(RelayBook.replay(Self.record("a", body: "h1", at: 0, answer: answer), request: "POST /run", bodyHash: "h2") == .bodyMismatch)
        #expect(RelayBook.replay(Self.record("a", body: "h1", at: 0, answer: answer), request: "POST /other", bodyHash: "h1") == .bodyMismatch, "another target")
        #expect(RelayBook.replay(Self.record("a", body: "h1", at: 0, answer: nil), request: "POST /run", bodyHash: "h1") == .notReplayable)
        #expect(RelayBook.replay(Self.record("a", body: "h1", at: 0, answer: nil), request: "POST /run", bodyHash: "h2") == .bodyMismatch, "another body is refused first")
    }

    @Test("records expire after relay_ttl, on admission and on restore")
    func expiry() {
        var book = RelayBook(ttl: .seconds(60), maxEntries: 10)
        _ = book.admit("a", now: 0)
        book.complete(Self.record("a", at: 0))
        #expect(book.admit("a", now: 59.9) != .forward)
        #expect(book.admit("a", now: 60) == .forward, "expired: forwarded as new")
        var restored = RelayBook(ttl: .seconds(60), maxEntries: 10)
        restored.restore(Self.record("old", at: 0), now: 61)
        restored.restore(Self.record("new", at: 30), now: 61)
        #expect(restored.count == 1 && restored.liveRecords(now: 61).map(\.relayID) == ["new"])
    }

    @Test("expired records leave from the oldest end as new ones come, so positions do not pile up")
    func expiredLeave() {
        var book = RelayBook(ttl: .seconds(10), maxEntries: 100)
        for i in 0..<50 {
            _ = book.admit("r\(i)", now: Double(i))
            book.complete(Self.record("r\(i)", at: Double(i)))
        }
        #expect(book.count == 10, "only the records of the last 10 s are kept: \(book.count)")
    }

    @Test("over relay_max_entries the oldest record goes first; a record kept again is not evicted by its older position")
    func eviction() {
        var book = RelayBook(ttl: .seconds(3600), maxEntries: 3)
        for (i, id) in ["a", "b", "c"].enumerated() {
            _ = book.admit(id, now: Double(i))
            book.complete(Self.record(id, at: Double(i)))
        }
        // "a" expires for the book's purpose only through TTL; here it is simply recorded again.
        book.restore(Self.record("a", at: 3), now: 3)
        _ = book.admit("d", now: 4)
        book.complete(Self.record("d", at: 4))
        #expect(book.count == 3)
        #expect(book.admit("b", now: 5) == .forward, "b was the oldest: evicted")
        #expect(book.admit("a", now: 5) != .forward, "a was recorded again at 3: kept")
        #expect(book.liveRecords(now: 5).map(\.relayID) == ["c", "a", "d"], "oldest first, each id once")
    }

    @Test("classify: only with gateway_secret; one relay id of visible ASCII; exactly one matching secret")
    func classify() {
        let secret = Secret("s3cret")
        func headers(_ pairs: [(String, String)]) -> HTTPHeaders { HTTPHeaders(pairs) }
        let id = GatewayRelay.relayIDHeader
        let key = GatewayRelay.secretHeader
        #expect(GatewayRelay.classify(headers([(id, "r1"), (key, "s3cret")]), secret: nil) == .notRelayed)
        #expect(GatewayRelay.classify(headers([(key, "s3cret")]), secret: secret) == .notRelayed)
        #expect(GatewayRelay.classify(headers([(id, "r1"), (key, "s3cret")]), secret: secret) == .relayed(id: "r1"))
        #expect(GatewayRelay.classify(headers([("X-Crochet-Relay-Request-Id", "r1"), ("X-Crochet-Gateway-Secret", "s3cret")]), secret: secret) == .relayed(id: "r1"))
        #expect(GatewayRelay.classify(headers([(id, "r1")]), secret: secret) == .notRelayed, "no secret: the token decides")
        for wrong in [[(id, "r1"), (key, "s3cre")], [(id, "r1"), (key, "s3cret!")], [(id, "r1"), (key, "s3cret"), (key, "s3cret")]] {
            #expect(GatewayRelay.classify(headers(wrong), secret: secret) == .reject(.tokenInvalid), "\(wrong)")
        }
        for bad in ["", "has space", String(repeating: "x", count: 129), "naïve"] {
            if case .reject(let rejection) = GatewayRelay.classify(headers([(id, bad), (key, "s3cret")]), secret: secret) {
                #expect(rejection.status == .badRequest, "relay id `\(bad)`")
            } else {
                Issue.record("relay id `\(bad)` was accepted")
            }
        }
    }

    @Test("fee model: 4.9 % of the gross, half up to the micro-dollar; the seed table's $4.90/$95.10 are percentages")
    func fee() {
        #expect(GatewayFee.fee(grossMicros: 1_000_000) == 49_000 && GatewayFee.sellerShare(grossMicros: 1_000_000) == 951_000)
        #expect(GatewayFee.fee(grossMicros: 10) == 0 && GatewayFee.fee(grossMicros: 11) == 1, "0.49 → 0, 0.539 → 1")
        #expect(MicroDollars.parse("0.25") == 250_000 && MicroDollars.parse("1") == 1_000_000)
        #expect(MicroDollars.parse("1.000001") == 1_000_001)
        for bad in ["", ".5", "1.", "1.0000001", "-1", "1e3", "one", "$1"] {
            #expect(MicroDollars.parse(bad) == nil, "`\(bad)` is not a price")
        }
        #expect(MicroDollars.format(951_000) == "0.951" && MicroDollars.format(1_902_000) == "1.902")
    }

    @Test("relay keys parse with their defaults; a bad price names the line and the key")
    func configuration() throws {
        let base = "upstream = http://127.0.0.1:3000\nseller_key = am_k_x\n"
        let defaults = try ConfigParser.parse(base, file: "t.conf", environment: [:], readFile: { _ in "" }).get()
        #expect(defaults.relayStore == "./subgate-relay.store" && defaults.relayTTL == .seconds(86_400))
        #expect(defaults.relayMaxEntries == 10_000 && defaults.relayMaxAnswerBytes == 16 * 1024 && defaults.gatewayPricePerCallMicros == nil)
        let set = try ConfigParser.parse(
            base + "relay_store = off\nrelay_ttl = 30m\nrelay_max_entries = 5\nrelay_max_answer_bytes = 1k\ngateway_price_per_call = $0.10\n",
            file: "t.conf", environment: [:], readFile: { _ in "" }
        ).get()
        #expect(set.relayStore == nil && set.relayTTL == .seconds(1800) && set.relayMaxEntries == 5 && set.relayMaxAnswerBytes == 1024)
        #expect(set.gatewayPricePerCallMicros == 100_000)
        switch ConfigParser.parse(base + "gateway_price_per_call = 0.1.2\n", file: "t.conf", environment: [:], readFile: { _ in "" }) {
        case .success:
            Issue.record("a bad price was accepted")
        case .failure(let errors):
            let text = "\(errors.errors[0])"
            #expect(text.contains("t.conf:3") && text.contains("gateway_price_per_call"), "\(text)")
        }
    }
}
