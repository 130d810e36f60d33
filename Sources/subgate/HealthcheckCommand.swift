import ArgumentParser
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import SubgateCore

/// `subgate healthcheck [--config FILE]`: asks the admin listener's `/healthz`; exit 0 when
/// healthy, 1 when not. For images with no curl (distroless).
struct HealthcheckCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "healthcheck",
        abstract: "Ask the admin listener's /healthz; exit 0 when healthy, 1 when not."
    )

    @OptionGroup var configOption: ConfigOption

    @Option(name: .long, help: "Seconds to wait for the answer.")
    var timeout: Int = 2

    func run() async throws {
        let config = try self.configOption.loadOrExit()
        var host = config.adminListen.host
        if host == "0.0.0.0" { host = "127.0.0.1" }
        if host == "::" { host = "::1" }
        let status = await Self.get(host: host, port: config.adminListen.port, path: "/healthz", timeout: .seconds(Int64(self.timeout)))
        if status == 200 {
            print("healthy")
            return
        }
        FileHandle.standardError.write(
            Data("subgate: not healthy: \(status.map { "GET /healthz answered \($0)" } ?? "no answer from \(config.adminListen)")\n".utf8)
        )
        throw ExitCode(1)
    }

    /// One GET over a fresh connection; the status code, or nil when nothing answered.
    static func get(host: String, port: Int, path: String, timeout: TimeAmount) async -> UInt? {
        let group = MultiThreadedEventLoopGroup.singleton
        do {
            let channel = try await ClientBootstrap(group: group)
                .connectTimeout(timeout)
                .connect(host: host, port: port) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHTTPClientHandlers()
                        return try NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>(wrappingChannelSynchronously: channel)
                    }
                }
            return try await withThrowingTaskGroup(of: UInt?.self) { tasks in
                tasks.addTask {
                    try await channel.executeThenClose { inbound, outbound in
                        var headers = HTTPHeaders()
                        headers.add(name: "host", value: host)
                        try await outbound.write(.head(HTTPRequestHead(version: .http1_1, method: .GET, uri: path, headers: headers)))
                        try await outbound.write(.end(nil))
                        for try await part in inbound {
                            if case .head(let head) = part { return head.status.code }
                        }
                        return nil
                    }
                }
                tasks.addTask {
                    try await Task.sleep(nanoseconds: UInt64(timeout.nanoseconds))
                    return nil
                }
                let first = try await tasks.next() ?? nil
                tasks.cancelAll()
                return first
            }
        } catch {
            return nil
        }
    }
}
