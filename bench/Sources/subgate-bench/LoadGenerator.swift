import NIOCore
import NIOPosix
import SubgateBenchCore

/// Runs a `LoadPlan`: one `LoadDriver` per thread, the connections split between them, all
/// connected before the clock starts; merges what they counted.
enum LoadGenerator {
    struct Outcome {
        var tally: LoadTally
        /// The measured window's real length (shorter when sequential tokens ran out).
        var measuredSeconds: Double
    }

    /// `billablePerToken`: also count billable answers per valid token (`LoadTally.billablePerToken`).
    static func run(plan: LoadPlan, catalog: RequestCatalog, billablePerToken: Bool = false) async throws -> Outcome {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: plan.threads)
        do {
            let outcome = try await self.run(plan: plan, catalog: catalog, group: group, billablePerToken: billablePerToken)
            try? await group.shutdownGracefully()
            return outcome
        } catch {
            try? await group.shutdownGracefully()
            throw error
        }
    }

    private static func run(plan: LoadPlan, catalog: RequestCatalog, group: MultiThreadedEventLoopGroup, billablePerToken: Bool) async throws -> Outcome {
        let address = try SocketAddress.makeAddressResolvingHost(plan.target.host, port: plan.target.port)
        let zipf: ZipfSampler?
        if case .zipf(let exponent) = plan.mix.selection {
            zipf = ZipfSampler(count: plan.mix.validTokens, exponent: exponent)
        } else {
            zipf = nil
        }
        let loops = (0..<plan.threads).map { _ in group.next() }
        let drivers = loops.enumerated().map { index, loop in
            LoadDriver(
                loop: loop,
                index: index,
                loops: plan.threads,
                numbers: Array(stride(from: index, to: plan.connections, by: plan.threads)),
                plan: plan,
                catalog: catalog,
                zipf: zipf,
                address: address,
                billablePerToken: billablePerToken
            )
        }
        do {
            try await EventLoopFuture.andAllSucceed(drivers.map { $0.connectAll() }, on: loops[0]).get()
        } catch {
            throw LoadPlanProblem("could not connect to \(plan.target.url): \(error). Is the target running?")
        }
        let clock = RunClock(start: .now() + .milliseconds(20), plan: plan)
        try await EventLoopFuture.andAllSucceed(drivers.map { $0.run(clock) }, on: loops[0]).get()

        var tally = LoadTally()
        var exhaustedAt: Int64?
        for driver in drivers {
            let (part, exhausted) = try await driver.loop.submit { (driver.tally, driver.exhaustedAt) }.get()
            tally.merge(part)
            if let exhausted { exhaustedAt = max(exhaustedAt ?? exhausted, exhausted) }
        }
        let until = min(clock.measureUntil, exhaustedAt ?? clock.measureUntil)
        let measured = Double(max(0, until - clock.measureFrom)) / 1e9
        return Outcome(tally: tally, measuredSeconds: measured)
    }
}
