import NIOCore
import NIOPosix

/// A client that writes exact bytes and reads what comes back, for inputs no HTTP library
/// would send (smuggling attempts, oversized heads, pipelining).
enum RawClient {
    /// Sends `request` and collects the answer bytes until the server closes or `timeout`
    /// passes. `closed` tells whether the server closed the connection.
    static func exchange(
        port: Int,
        _ request: [UInt8],
        timeout: TimeAmount = .seconds(3),
        group: any EventLoopGroup
    ) async throws -> (text: String, closed: Bool) {
        let channel = try await ClientBootstrap(group: group)
            .connect(host: "127.0.0.1", port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                }
            }
        return try await channel.executeThenClose { inbound, outbound in
            try await outbound.write(ByteBuffer(bytes: request))
            return try await withThrowingTaskGroup(of: (String, Bool)?.self) { tasks in
                tasks.addTask {
                    var collected = ByteBuffer()
                    do {
                        for try await var chunk in inbound {
                            collected.writeBuffer(&chunk)
                        }
                    } catch {
                        // A reset after the answer still counts as the answer plus a close.
                    }
                    return (String(buffer: collected), true)
                }
                tasks.addTask {
                    try await Task.sleep(nanoseconds: UInt64(timeout.nanoseconds))
                    return nil
                }
                let first = try await tasks.next() ?? nil
                tasks.cancelAll()
                if let first { return (first.0, first.1) }
                return ("", false)
            }
        }
    }

    static func exchange(port: Int, _ text: String, timeout: TimeAmount = .seconds(3), group: any EventLoopGroup) async throws -> (text: String, closed: Bool) {
        try await Self.exchange(port: port, Array(text.utf8), timeout: timeout, group: group)
    }
}
