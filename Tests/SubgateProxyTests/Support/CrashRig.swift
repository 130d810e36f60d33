import Foundation
import NIOPosix
import SubgateSimulator

/// What the crash tests run the real `subgate` binary against: a test upstream, the simulator
/// and a journal path in a fresh temporary directory, all torn down after `body`.
struct CrashRig {
    let upstream: TestUpstream
    let simulator: Simulator
    /// `usage_journal` for every run of the test (the same file across restarts).
    let journal: String

    static func with(_ name: String, _ body: (CrashRig) async throws -> Void) async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let upstream = try await TestUpstream(group: group)
        let simulator = try await Simulator.start(group: group)
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("subgate-\(name)-\(UUID().uuidString)")
        do {
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            try await body(CrashRig(upstream: upstream, simulator: simulator, journal: directory.appendingPathComponent("usage.journal").path))
        } catch {
            await Self.tearDown(group, upstream, simulator, directory)
            throw error
        }
        await Self.tearDown(group, upstream, simulator, directory)
    }

    private static func tearDown(_ group: MultiThreadedEventLoopGroup, _ upstream: TestUpstream, _ simulator: Simulator, _ directory: URL) async {
        await simulator.stop()
        await upstream.stop()
        try? await group.shutdownGracefully()
        try? FileManager.default.removeItem(at: directory)
    }
}
