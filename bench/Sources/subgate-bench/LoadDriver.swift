import NIOCore
import NIOHTTP1
import NIOPosix
import SubgateBenchCore

/// The instants of a run, as nanoseconds on NIO's monotonic clock.
struct RunClock: Sendable {
    /// When the first request is due.
    let start: UInt64
    /// Offsets from `start`: the measured window is [measureFrom, measureUntil).
    let measureFrom: Int64
    let measureUntil: Int64
    /// After sending stops, answers still in flight are awaited this long.
    let drain: Int64
    let timeout: Int64

    init(start: NIODeadline, plan: LoadPlan) {
        self.start = start.uptimeNanoseconds
        self.measureFrom = plan.warmup.nanoseconds
        self.measureUntil = plan.warmup.nanoseconds + plan.duration.nanoseconds
        self.drain = plan.drain.nanoseconds
        self.timeout = plan.timeout.nanoseconds
    }

    @inline(__always)
    func now() -> Int64 {
        Int64(bitPattern: NIODeadline.now().uptimeNanoseconds &- self.start)
    }

    func deadline(_ offset: Int64) -> NIODeadline {
        .uptimeNanoseconds(UInt64(Int64(bitPattern: self.start) &+ offset))
    }
}

/// Drives the connections of one event loop: sends, times and counts. Every property is
/// touched on `loop` only (hence `@unchecked Sendable`: it crosses to the loop once, at the
/// start), so the per-request path takes no lock and allocates only NIO's own wrappers.
final class LoadDriver: @unchecked Sendable {
    /// One connection and the request it has in flight.
    private struct Slot {
        /// The connection number over all loops (the open-loop schedule's index).
        let number: Int
        var context: ChannelHandlerContext?
        var open: OpenLoopConnection?
        var waiting: Scheduled<Void>?
        var inFlight = false
        var due: Int64 = 0
        var sentAt: Int64 = 0
        var validToken = false
        /// The valid token's index, or -1.
        var token = -1
        var status = 0
        var keepAlive = true
        var reconnecting = false
    }

    let loop: any EventLoop
    private let plan: LoadPlan
    private let catalog: RequestCatalog
    private var picker: TokenPicker
    private var slots: [Slot]
    private let address: SocketAddress
    private var clock: RunClock?
    private(set) var tally = LoadTally()
    private var sendingStopped = false
    private var finished = false
    /// When sequential tokens ran out (offset), if they did.
    private(set) var exhaustedAt: Int64?
    private var timeoutCheck: RepeatedTask?
    private let done: EventLoopPromise<Void>
    /// The head NIO's decoder is shown for every request (only its method matters to it).
    private let head: HTTPRequestHead

    /// `numbers`: the connection numbers (over all loops) this driver owns.
    /// `billablePerToken`: also count billable answers per valid token (`--billable-out`).
    init(
        loop: any EventLoop, index: Int, loops: Int, numbers: [Int], plan: LoadPlan, catalog: RequestCatalog, zipf: ZipfSampler?,
        address: SocketAddress, billablePerToken: Bool = false
    ) {
        self.loop = loop
        self.plan = plan
        self.catalog = catalog
        self.picker = TokenPicker(mix: plan.mix, seed: plan.seed, stream: index, streams: loops, zipf: zipf)
        self.slots = numbers.map { Slot(number: $0) }
        self.done = loop.makePromise()
        self.head = HTTPRequestHead(version: .http1_1, method: catalog.hasBody ? .POST : .GET, uri: plan.target.path)
        self.address = address
        if billablePerToken { self.tally.trackBillablePerToken(count: catalog.validCount) }
    }

    /// Resolves when every connection is up (fails with the first connect error).
    func connectAll() -> EventLoopFuture<Void> {
        self.loop.flatSubmit {
            let futures = (0..<self.slots.count).map { self.connect(slot: $0) }
            return EventLoopFuture.andAllSucceed(futures, on: self.loop)
        }
    }

    private func connect(slot: Int) -> EventLoopFuture<Void> {
        // A bootstrap per connection: its initializer names the slot.
        ClientBootstrap(group: self.loop)
            .channelOption(.socketOption(.so_reuseaddr), value: 1)
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            .connectTimeout(.seconds(5))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    switch self.plan.decoder {
                    case .fast:
                        try channel.pipeline.syncOperations.addHandler(FramedConnectionHandler(driver: self, slot: slot))
                    case .nio:
                        try channel.pipeline.syncOperations.addHandlers([
                            RawRequestWriter(),
                            ByteToMessageHandler(HTTPResponseDecoder(leftOverBytesStrategy: .dropBytes)),
                            DecodedConnectionHandler(driver: self, slot: slot),
                        ])
                    }
                }
            }
            .connect(to: self.address)
            .map { _ in () }
    }

    /// Starts sending at `clock.start`; the future ends when the run (drain included) is over.
    func run(_ clock: RunClock) -> EventLoopFuture<Void> {
        self.loop.execute {
            self.clock = clock
            self.loop.scheduleTask(deadline: clock.deadline(clock.measureUntil)) { self.stopSending() }
            self.timeoutCheck = self.loop.scheduleRepeatedTask(initialDelay: .milliseconds(100), delay: .milliseconds(100)) { _ in
                self.checkTimeouts()
            }
            self.loop.scheduleTask(deadline: clock.deadline(0)) {
                for slot in self.slots.indices { self.idle(slot) }
            }
        }
        return self.done.futureResult
    }

    // MARK: - Events from the connections

    func connected(slot: Int, context: ChannelHandlerContext) {
        self.slots[slot].context = context
        self.slots[slot].keepAlive = true
        if self.slots[slot].reconnecting {
            self.slots[slot].reconnecting = false
            self.idle(slot)
        }
    }

    func answerHead(slot: Int, status: Int, keepAlive: Bool) {
        self.slots[slot].status = status
        self.slots[slot].keepAlive = keepAlive
    }

    func answerBody(slot: Int, bytes: Int) {
        self.tally.bodyBytes &+= bytes
    }

    func answerEnd(slot: Int) {
        guard let clock = self.clock, self.slots[slot].inFlight else { return }
        let now = clock.now()
        let due = self.slots[slot].due
        let until = self.measureUntil(clock)
        self.tally.answer(
            status: self.slots[slot].status,
            validToken: self.slots[slot].validToken,
            latencyNanoseconds: now - due,
            measured: due >= clock.measureFrom && due < until,
            inWindow: now >= clock.measureFrom && now < until,
            token: self.slots[slot].token
        )
        self.slots[slot].inFlight = false
        if !self.slots[slot].keepAlive {
            // The target closes this connection: a new one is opened when it has gone.
            self.slots[slot].context?.close(promise: nil)
            return
        }
        self.idle(slot)
    }

    func protocolError(slot: Int) {
        self.tally.protocolErrors += 1
    }

    func disconnected(slot: Int) {
        self.slots[slot].context = nil
        // The new connection schedules its own wait when it comes up.
        self.slots[slot].waiting?.cancel()
        self.slots[slot].waiting = nil
        if self.slots[slot].inFlight {
            self.slots[slot].inFlight = false
            self.tally.closedInFlight += 1
        }
        if self.sendingStopped {
            self.finishIfDrained()
            return
        }
        self.reconnect(slot)
    }

    private func reconnect(_ slot: Int) {
        guard !self.sendingStopped, !self.slots[slot].reconnecting else { return }
        self.slots[slot].reconnecting = true
        self.connect(slot: slot).whenFailure { _ in
            self.tally.connectFailures += 1
            self.slots[slot].reconnecting = false
            guard !self.sendingStopped else { return }
            self.loop.scheduleTask(in: .milliseconds(100)) { self.reconnect(slot) }
        }
    }

    // MARK: - Sending

    /// The connection has nothing in flight: send now, wait for the schedule, or stop.
    /// Never a second request while one is in flight: answers are paired with the one request
    /// a slot has (a connection that comes back while its old wait is still scheduled would
    /// otherwise send twice when it runs late).
    private func idle(_ slot: Int) {
        guard !self.sendingStopped, let clock = self.clock, self.slots[slot].context != nil, !self.slots[slot].inFlight else { return }
        switch self.plan.loop {
        case .closed:
            let now = clock.now()
            self.send(slot, due: now, now: now)
        case .open(let schedule):
            if self.slots[slot].open == nil {
                self.slots[slot].open = OpenLoopConnection(schedule: schedule, connection: self.slots[slot].number, endOffset: clock.measureUntil)
            }
            let now = clock.now()
            switch self.slots[slot].open!.idle(now: now) {
            case .send(_, let due):
                self.send(slot, due: due, now: now)
            case .wait(let until):
                self.slots[slot].waiting?.cancel()
                self.slots[slot].waiting = self.loop.scheduleTask(deadline: clock.deadline(until)) {
                    self.slots[slot].waiting = nil
                    self.idle(slot)
                }
            case .finished:
                break
            }
        }
    }

    @inline(__always)
    private func send(_ slot: Int, due: Int64, now: Int64) {
        guard let context = self.slots[slot].context else { return }
        guard let pick = self.picker.next() else {
            self.tokensRanOut(at: now)
            return
        }
        let valid: Bool
        let token: Int
        if case .valid(let index) = pick { (valid, token) = (true, index) } else { (valid, token) = (false, -1) }
        self.slots[slot].inFlight = true
        self.slots[slot].due = due
        self.slots[slot].sentAt = now
        self.slots[slot].validToken = valid
        self.slots[slot].token = token
        self.slots[slot].status = 0
        self.tally.sent += 1
        if valid { self.tally.validSent += 1 }
        switch self.plan.decoder {
        case .fast:
            context.writeAndFlush(NIOAny(self.catalog.request(pick)), promise: nil)
        case .nio:
            context.write(NIOAny(HTTPClientRequestPart.head(self.head)), promise: nil)
            context.writeAndFlush(NIOAny(HTTPClientRequestPart.body(.byteBuffer(self.catalog.request(pick)))), promise: nil)
        }
    }

    private func tokensRanOut(at now: Int64) {
        if self.exhaustedAt == nil {
            self.exhaustedAt = now
            self.tally.tokensExhausted = true
        }
        self.stopSending()
    }

    /// The window's end, earlier when the tokens ran out.
    private func measureUntil(_ clock: RunClock) -> Int64 {
        guard let exhaustedAt = self.exhaustedAt else { return clock.measureUntil }
        return min(clock.measureUntil, exhaustedAt)
    }

    // MARK: - Ending

    private func stopSending() {
        guard !self.sendingStopped, let clock = self.clock else { return }
        self.sendingStopped = true
        for slot in self.slots.indices {
            self.slots[slot].waiting?.cancel()
            self.slots[slot].waiting = nil
            if let open = self.slots[slot].open {
                self.tally.unsentDue += open.unsent(now: clock.measureUntil - 1)
            }
        }
        self.loop.scheduleTask(in: .nanoseconds(max(clock.drain, 0))) { self.finish() }
        self.finishIfDrained()
    }

    private func finishIfDrained() {
        guard self.sendingStopped, !self.slots.contains(where: { $0.inFlight }) else { return }
        self.finish()
    }

    private func checkTimeouts() {
        guard let clock = self.clock else { return }
        let now = clock.now()
        for slot in self.slots.indices where self.slots[slot].inFlight && now - self.slots[slot].sentAt > clock.timeout {
            self.slots[slot].inFlight = false
            self.tally.timeouts += 1
            self.slots[slot].context?.close(promise: nil)
        }
        if self.sendingStopped { self.finishIfDrained() }
    }

    private func finish() {
        guard !self.finished else { return }
        self.finished = true
        self.sendingStopped = true
        self.timeoutCheck?.cancel()
        for slot in self.slots.indices where self.slots[slot].inFlight {
            // Still unanswered when the drain ended.
            self.slots[slot].inFlight = false
            self.tally.timeouts += 1
        }
        let closes = self.slots.compactMap { $0.context?.channel.close() }
        EventLoopFuture.whenAllComplete(closes, on: self.loop).whenComplete { _ in
            self.done.succeed(())
        }
    }
}
