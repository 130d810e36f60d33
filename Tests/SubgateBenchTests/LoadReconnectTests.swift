import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Testing

/// The generator against a target that drops every connection mid-run (as a SIGKILLed proxy
/// does), run as the real `subgate-bench` binary: it reconnects, never has two requests in
/// flight on one connection (its answers are paired with requests one at a time), and counts
/// exactly the answers it received.
@Suite(.serialized) struct LoadReconnectTests {
    /// The binary `swift build` produced beside the test bundle.
    static var binary: URL {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let candidates = ["debug", "release"].map { root.appendingPathComponent(".build/\($0)/subgate-bench") }
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0.path) } ?? candidates[0]
    }

    /// What the target saw, over all connections.
    struct Seen {
        var requests = 0
        var answered = 0
        /// A request arrived while an earlier one on the same connection was unanswered.
        var pipelined = 0
        var channels: [any Channel] = []
    }

    /// HTTP/1.1 by hand: a request ends at its blank line (GET, no body); each is answered
    /// `200` after `delay()`, in order.
    final class Target: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer
        let seen: NIOLockedValueBox<Seen>
        let delay: @Sendable () -> TimeAmount
        private var pending = 0
        private var buffered = ""

        init(seen: NIOLockedValueBox<Seen>, delay: @escaping @Sendable () -> TimeAmount) {
            self.seen = seen
            self.delay = delay
        }

        func channelActive(context: ChannelHandlerContext) {
            let channel = context.channel
            self.seen.withLockedValue { $0.channels.append(channel) }
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            self.buffered += String(buffer: self.unwrapInboundIn(data))
            while let end = self.buffered.range(of: "\r\n\r\n") {
                self.buffered.removeSubrange(..<end.upperBound)
                let pipelined = self.pending > 0
                self.pending += 1
                self.seen.withLockedValue {
                    $0.requests += 1
                    if pipelined { $0.pipelined += 1 }
                }
                let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
                context.eventLoop.scheduleTask(in: self.delay()) {
                    let context = loopBound.value
                    guard context.channel.isActive else { return }
                    self.pending -= 1
                    self.seen.withLockedValue { $0.answered += 1 }
                    context.writeAndFlush(self.wrapOutboundOut(ByteBuffer(string: "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")), promise: nil)
                }
            }
        }
    }

    @Test("open loop: after every connection is dropped, connections come back and never carry two requests at once; answers counted = answers sent")
    func reconnectWithoutPipelining() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        do {
            try await self.run(group: group)
        } catch {
            try? await group.shutdownGracefully()
            throw error
        }
        try await group.shutdownGracefully()
    }

    private func run(group: MultiThreadedEventLoopGroup) async throws {
        let seen = NIOLockedValueBox(Seen())
        let slow = NIOLockedValueBox(false)
        let server = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    // Answers become slower than the schedule once the connections were dropped,
                    // so requests fall late and a connection is asked to send while one is in flight.
                    try channel.pipeline.syncOperations.addHandler(Target(seen: seen, delay: { slow.withLockedValue { $0 } ? .milliseconds(60) : .zero }))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        let port = try #require(server.localAddress?.port)
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("subgate-bench-reconnect-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let tokens = directory.appendingPathComponent("tokens.txt")
        try "cro_sub_reconnect_test\n".write(to: tokens, atomically: true, encoding: .utf8)
        let output = directory.appendingPathComponent("out.json")
        FileManager.default.createFile(atPath: output.path, contents: nil)

        let process = Process()
        process.executableURL = Self.binary
        // 8 connections at 400/s: each sends every 20 ms, mostly waiting for its due time. 5 s,
        // so the connections come back within the run even when a loaded machine is slow to
        // start it (with 2 s, one full parallel run at load 9 ended before any reconnect).
        process.arguments = [
            "load", "http://127.0.0.1:\(port)/", "--rate", "400", "--connections", "8", "--duration", "5s", "--warmup", "0s",
            "--drain", "3s", "--mix", "hot", "--tokens-file", tokens.path, "--json",
        ]
        process.standardOutput = try FileHandle(forWritingTo: output)
        process.standardError = FileHandle.nullDevice
        try process.run()
        defer { if process.isRunning { process.terminate() } }

        try await Task.sleep(for: .milliseconds(700))
        // Drop every connection (the listener stays: they come back at once), then slow down.
        let channels = seen.withLockedValue { $0.channels }
        slow.withLockedValue { $0 = true }
        for channel in channels { try? await channel.close() }

        let deadline = ContinuousClock.now + .seconds(20)
        while process.isRunning && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(50)) }
        #expect(!process.isRunning, "subgate-bench did not finish")
        try await server.close()
        let report = try #require(
            try JSONSerialization.jsonObject(with: Data(contentsOf: output)) as? [String: Any],
            "subgate-bench printed no JSON: \(String(decoding: (try? Data(contentsOf: output)) ?? Data(), as: UTF8.self))"
        )
        let final = seen.withLockedValue { $0 }
        #expect(channels.count >= 8, "the target should have seen the 8 connections before dropping them: \(channels.count)")
        #expect(final.channels.count > channels.count, "the generator did not reconnect after the drop")
        #expect(final.pipelined == 0, "a connection carried a second request before its first was answered \(final.pipelined) time(s): answers are then paired with the wrong request")
        let responses = report["responses"] as? Int ?? -1
        let billable = report["billableAnswers"] as? Int ?? -1
        // Answers written to a connection that was then dropped may be lost in flight: at most one per dropped connection.
        #expect(responses <= final.answered && responses >= final.answered - channels.count, "the generator counted \(responses) answers; the target sent \(final.answered)")
        #expect(billable == responses, "every answer was a 200 to the valid token: billable \(billable), answers \(responses)")
    }
}
