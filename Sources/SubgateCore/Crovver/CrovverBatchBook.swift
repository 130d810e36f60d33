/// One tenant's pool: what a consume call names (`tenantId`, `poolKey`).
public struct CrovverPoolKey: Hashable, Sendable, Comparable {
    public var tenant: String
    public var pool: String

    public init(tenant: String, pool: String) {
        self.tenant = tenant
        self.pool = pool
    }

    public static func < (lhs: CrovverPoolKey, rhs: CrovverPoolKey) -> Bool {
        lhs.tenant != rhs.tenant ? lhs.tenant < rhs.tenant : lhs.pool < rhs.pool
    }
}

/// One `credits/consume` call's worth of credits, under one idempotency key. It is journaled
/// (`B`) before it is first sent and until it is answered (`E`), so every retry and every
/// restart sends the same key: Crovver deducts it at most once.
public struct CrovverBatch: Sendable, Equatable {
    /// The sidecar's sequence number: the key is `subgate-<sidecar id>-<sequence>`.
    public var sequence: UInt64
    public var key: CrovverPoolKey
    /// Credits, 1…`CrovverBatchBook.maxBatchUnits`.
    public var units: Int
    /// `metadata.endpoint`: the path of the last request whose units are in the batch.
    public var endpoint: String
    /// `metadata.requestId`: that request's `x-request-id`.
    public var requestID: String
    /// A tenant's synchronous first consume: its credits were never pending, so replaying it
    /// must not take them from the pool's pending credits.
    public var synchronous: Bool

    public init(sequence: UInt64, key: CrovverPoolKey, units: Int, endpoint: String, requestID: String, synchronous: Bool = false) {
        self.sequence = sequence
        self.key = key
        self.units = units
        self.endpoint = endpoint
        self.requestID = requestID
        self.synchronous = synchronous
    }
}

/// The credits this sidecar owes Crovver, and the batches that carry them (SPEC §6): units
/// served after a tenant's first request accumulate per (tenant, pool) and leave as one batch
/// per pool per flush, each with an idempotency key built from the sidecar's id and a sequence
/// number (never the clock). A plain value: `CrovverEnforcement` keeps it under a lock and
/// journals every change it makes.
///
/// Life of a batch: `takeBatches` (or `openSynchronous`) opens it — the caller journals `B` and
/// commits the journal before sending — and marks it in flight; the answer `settle`s it (the
/// caller journals `E`), or a failure `release`s it to be sent again, under the same key, by a
/// later flush. While a pool has an open batch, its new units wait: one call per pool per flush,
/// and a retried key always carries the units it was first sent with.
public struct CrovverBatchBook: Sendable, Equatable {
    /// The most credits one batch carries (Crovver's ceiling on `amount`, and a journal
    /// line's); the rest waits a flush.
    public static let maxBatchUnits = JournalCodec.maxCrovverUnitsPerRecord
    /// `metadata` fields are cut to these lengths (they are journaled with the batch).
    public static let maxEndpointLength = 512
    public static let maxRequestIDLength = 128

    /// What waits for a batch, per pool.
    public struct Pending: Sendable, Equatable {
        public var units: Int
        public var endpoint: String
        public var requestID: String
    }

    /// This sidecar's id (16 lowercase hex digits), stable across restarts: it lives in the journal.
    public let sidecarID: String
    /// The next batch's sequence number (never reused: the journal keeps the high-water mark).
    public private(set) var nextSequence: UInt64
    public private(set) var pending: [CrovverPoolKey: Pending] = [:]
    /// Batches opened (journaled) and not answered, by sequence.
    public private(set) var open: [UInt64: CrovverBatch] = [:]
    /// The open batches being sent right now.
    public private(set) var inFlight: Set<UInt64> = []

    public init(sidecarID: String, nextSequence: UInt64 = 1) {
        self.sidecarID = sidecarID
        self.nextSequence = max(1, nextSequence)
    }

    /// A book as a journal replay left it: its pending credits and its open batches.
    public init(sidecarID: String, replayed state: CrovverJournalState) {
        self.init(sidecarID: sidecarID, nextSequence: state.nextSequence)
        for (key, units) in state.pending where units > 0 {
            self.pending[key] = Pending(units: units, endpoint: "", requestID: "")
        }
        self.open = state.batches
        if let highest = state.batches.keys.max(), highest >= self.nextSequence { self.nextSequence = highest + 1 }
    }

    /// The idempotency key of a batch: `subgate-<sidecar id>-<sequence>`.
    public static func idempotencyKey(sidecarID: String, sequence: UInt64) -> String {
        "subgate-\(sidecarID)-\(sequence)"
    }

    public func idempotencyKey(_ batch: CrovverBatch) -> String {
        Self.idempotencyKey(sidecarID: self.sidecarID, sequence: batch.sequence)
    }

    /// A new sidecar id: 64 random bits as 16 lowercase hex digits.
    public static func newSidecarID<G: RandomNumberGenerator>(using generator: inout G) -> String {
        let value = generator.next() as UInt64
        let hex = String(value, radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex
    }

    /// Whether `text` is a sidecar id as `newSidecarID` makes them.
    public static func isValidSidecarID(_ text: String) -> Bool {
        text.utf8.count == 16 && text.utf8.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) }
    }

    // MARK: - Units

    /// Credits billed for a request after the tenant's first; `endpoint` and `requestID` become
    /// the batch's metadata (the last request's).
    public mutating func add(_ key: CrovverPoolKey, units: Int, endpoint: String, requestID: String) {
        guard units > 0 else { return }
        let endpoint = String(endpoint.utf8.prefix(Self.maxEndpointLength)) ?? ""
        let requestID = String(requestID.utf8.prefix(Self.maxRequestIDLength)) ?? ""
        if var entry = self.pending[key] {
            entry.units += units
            entry.endpoint = endpoint
            entry.requestID = requestID
            self.pending[key] = entry
        } else {
            self.pending[key] = Pending(units: units, endpoint: endpoint, requestID: requestID)
        }
    }

    /// Credits not yet in a batch.
    public var pendingUnits: Int { self.pending.values.reduce(0) { $0 + $1.units } }
    /// Credits in batches opened and not answered.
    public var openUnits: Int { self.open.values.reduce(0) { $0 + $1.units } }

    /// Whether a consume for this pool (a batch or a first consume) has been sent and not answered.
    public func isInFlight(pool key: CrovverPoolKey) -> Bool {
        self.inFlight.contains { self.open[$0]?.key == key }
    }

    // MARK: - Batches

    /// A consume for one request, sent at once (a tenant's first request, or a probe). It is
    /// an open batch like any other: if its answer is lost, a flush retries the same key.
    public mutating func openSynchronous(_ key: CrovverPoolKey, units: Int, endpoint: String, requestID: String) -> CrovverBatch {
        let batch = CrovverBatch(
            sequence: self.nextSequence, key: key, units: min(max(1, units), Self.maxBatchUnits),
            endpoint: String(endpoint.utf8.prefix(Self.maxEndpointLength)) ?? "",
            requestID: String(requestID.utf8.prefix(Self.maxRequestIDLength)) ?? "",
            synchronous: true
        )
        self.nextSequence += 1
        self.open[batch.sequence] = batch
        self.inFlight.insert(batch.sequence)
        return batch
    }

    /// Up to `maxBatches` batches to send now, marked in flight: open batches not in flight
    /// first (retries, with their first key and units, oldest first), then one new batch per
    /// pool with pending credits and no open batch, largest first. `opened` are the new ones:
    /// the caller journals them and commits before sending.
    public mutating func takeBatches(maxBatches: Int) -> (batches: [CrovverBatch], opened: [CrovverBatch]) {
        guard maxBatches > 0 else { return ([], []) }
        var batches: [CrovverBatch] = []
        for sequence in self.open.keys.sorted() where !self.inFlight.contains(sequence) {
            guard batches.count < maxBatches, let batch = self.open[sequence] else { break }
            batches.append(batch)
            self.inFlight.insert(sequence)
        }
        let busy = Set(self.open.values.map(\.key))
        let order = self.pending
            .filter { !busy.contains($0.key) && $0.value.units > 0 }
            .sorted { $0.value.units != $1.value.units ? $0.value.units > $1.value.units : $0.key < $1.key }
        var opened: [CrovverBatch] = []
        for (key, entry) in order where batches.count < maxBatches {
            let units = min(entry.units, Self.maxBatchUnits)
            let batch = CrovverBatch(sequence: self.nextSequence, key: key, units: units, endpoint: entry.endpoint, requestID: entry.requestID)
            self.nextSequence += 1
            if entry.units > units {
                self.pending[key]?.units = entry.units - units
            } else {
                self.pending[key] = nil
            }
            self.open[batch.sequence] = batch
            self.inFlight.insert(batch.sequence)
            batches.append(batch)
            opened.append(batch)
        }
        return (batches, opened)
    }

    /// Whether `takeBatches` would return something now: an open batch not in flight, or
    /// pending credits of a pool without an open batch.
    public var hasSendableBatches: Bool {
        if self.open.keys.contains(where: { !self.inFlight.contains($0) }) { return true }
        let busy = Set(self.open.values.map(\.key))
        return self.pending.contains { !busy.contains($0.key) && $0.value.units > 0 }
    }

    /// The batch was answered (or given up): it is done. Returns it, if it was open.
    @discardableResult
    public mutating func settle(_ sequence: UInt64) -> CrovverBatch? {
        self.inFlight.remove(sequence)
        return self.open.removeValue(forKey: sequence)
    }

    /// The batch was not answered: it stays open and a later flush sends it again, same key.
    public mutating func release(_ sequence: UInt64) {
        self.inFlight.remove(sequence)
    }
}
