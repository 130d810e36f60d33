import Foundation

/// An answer of the seller's upstream to a gateway-relayed call, as the client got it.
public struct RelayAnswer: Sendable, Equatable, Codable {
    public struct Field: Sendable, Equatable, Codable {
        public var name: String
        public var value: String

        public init(name: String, value: String) {
            self.name = name
            self.value = value
        }
    }

    public var status: Int
    public var headers: [Field]
    public var body: [UInt8]

    public init(status: Int, headers: [Field], body: [UInt8]) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    private enum CodingKeys: String, CodingKey {
        case status, headers, body
    }

    // The body as base64 in the store, not as a JSON array of numbers.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.status = try container.decode(Int.self, forKey: .status)
        self.headers = try container.decode([Field].self, forKey: .headers)
        guard let body = Data(base64Encoded: try container.decode(String.self, forKey: .body)) else {
            throw DecodingError.dataCorruptedError(forKey: .body, in: container, debugDescription: "body is not base64")
        }
        self.body = Array(body)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(self.status, forKey: .status)
        try container.encode(self.headers, forKey: .headers)
        try container.encode(Data(self.body).base64EncodedString(), forKey: .body)
    }
}

/// What is kept of one relay id (SPEC §6): the SHA-256 of the request body it paid for and
/// the outcome, never the request body itself.
public struct RelayRecord: Sendable, Equatable, Codable {
    public var relayID: String
    /// The request's method and target (`POST /v1/run`): a repeat must name the same.
    public var request: String
    /// Lowercase hex SHA-256 of the request body.
    public var bodyHash: String
    /// Wall-clock time of the answer, in seconds since 1970 (it must survive a restart).
    public var recordedAt: Double
    /// The answer to replay; nil when it was larger than `relay_max_answer_bytes`.
    public var answer: RelayAnswer?

    public init(relayID: String, request: String, bodyHash: String, recordedAt: Double, answer: RelayAnswer?) {
        self.relayID = relayID
        self.request = request
        self.bodyHash = bodyHash
        self.recordedAt = recordedAt
        self.answer = answer
    }
}

/// The relay ids Subgate has served, and the decisions that follow from them (SPEC §6,
/// "Gateway-relayed calls"). A value type: the proxy keeps one behind a lock and persists
/// completed records; tests drive it directly.
///
/// - An id never seen is forwarded once; while that call is in flight, a repeat is refused
///   as in progress (it would otherwise call the seller twice).
/// - A recorded id with the same body hash replays the recorded answer; with another body it
///   is refused (the gateway's rule: a verified relay id pays for one request only).
/// - Records older than `ttl` are forgotten; over `maxEntries` the oldest go first.
public struct RelayBook: Sendable {
    public enum Admission: Sendable, Equatable {
        /// First sighting: forward it, then `complete` or `abandon`.
        case forward
        /// The first call with this id has not been answered yet.
        case inProgress
        /// Already answered: compare the body hash with `replay(_:bodyHash:)`.
        case recorded(RelayRecord)
    }

    public enum Replay: Sendable, Equatable {
        case answer(RelayAnswer)
        /// The same id with another body, method or target: 409 `RELAY_ID_REUSED`.
        case bodyMismatch
        /// The same request, whose answer was too large to keep: 409 `RELAY_NOT_REPLAYABLE`.
        case notReplayable
    }

    public let ttl: Duration
    public let maxEntries: Int
    private var records: [String: (record: RelayRecord, sequence: Int)] = [:]
    private var inFlight: Set<String> = []
    /// Relay ids in the order they were recorded (oldest first, from `head`), with the sequence
    /// number of that recording: an id recorded again appears twice, and only its latest
    /// position evicts it.
    private var order: [(id: String, sequence: Int)] = []
    private var head = 0
    private var nextSequence = 0

    public init(ttl: Duration, maxEntries: Int) {
        precondition(maxEntries > 0, "maxEntries must be at least 1")
        self.ttl = ttl
        self.maxEntries = maxEntries
    }

    public var count: Int { self.records.count }
    public var inFlightCount: Int { self.inFlight.count }

    /// Decides what a request carrying `relayID` gets, at wall-clock time `now` (seconds since 1970).
    public mutating func admit(_ relayID: String, now: Double) -> Admission {
        if self.inFlight.contains(relayID) { return .inProgress }
        if let record = self.records[relayID]?.record {
            if now - record.recordedAt < self.ttl.inSeconds { return .recorded(record) }
            self.records[relayID] = nil
        }
        self.inFlight.insert(relayID)
        return .forward
    }

    /// The forwarded call was answered by the upstream: keep its outcome.
    public mutating func complete(_ record: RelayRecord) {
        self.inFlight.remove(record.relayID)
        self.insert(record)
    }

    /// The forwarded call ended without the upstream's answer (unreachable, timed out,
    /// aborted): nothing is kept, and a retry forwards again.
    public mutating func abandon(_ relayID: String) {
        self.inFlight.remove(relayID)
    }

    /// Loads a record from the store (on start); expired ones are skipped.
    public mutating func restore(_ record: RelayRecord, now: Double) {
        guard now - record.recordedAt < self.ttl.inSeconds else { return }
        self.insert(record)
    }

    /// The records worth keeping on disk, oldest first (for compaction).
    public func liveRecords(now: Double) -> [RelayRecord] {
        self.order[self.head...].compactMap { position in
            guard let entry = self.records[position.id], entry.sequence == position.sequence,
                now - entry.record.recordedAt < self.ttl.inSeconds
            else { return nil }
            return entry.record
        }
    }

    public static func replay(_ record: RelayRecord, request: String, bodyHash: String) -> Replay {
        guard record.bodyHash == bodyHash, record.request == request else { return .bodyMismatch }
        guard let answer = record.answer else { return .notReplayable }
        return .answer(answer)
    }

    private mutating func insert(_ record: RelayRecord) {
        let sequence = self.nextSequence
        self.nextSequence += 1
        self.records[record.relayID] = (record, sequence)
        self.order.append((record.relayID, sequence))
        // From the oldest: evict over `maxEntries`, drop expired records, and skip positions an
        // id recorded again has left behind (so `order` cannot grow past the live records).
        let now = record.recordedAt
        while self.head < self.order.count {
            let oldest = self.order[self.head]
            guard let entry = self.records[oldest.id], entry.sequence == oldest.sequence else {
                self.head += 1
                continue
            }
            guard self.records.count > self.maxEntries || now - entry.record.recordedAt >= self.ttl.inSeconds else { break }
            self.records[oldest.id] = nil
            self.head += 1
        }
        if self.head > 1024 && self.head * 2 > self.order.count {
            self.order.removeFirst(self.head)
            self.head = 0
        }
    }

    /// A relay id as the gateway sends it: 1 to 128 visible ASCII characters.
    public static func isValidRelayID(_ id: String) -> Bool {
        !id.isEmpty && id.utf8.count <= 128 && id.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7F }
    }
}
