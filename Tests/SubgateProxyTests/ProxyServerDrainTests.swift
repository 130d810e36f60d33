import NIOCore
import NIOPosix
import Testing
@testable import SubgateProxy

/// SPEC §4 (`shutdown_grace`) in process: what `ProxyServer.drain` promises the caller that
/// shuts the event loops down after it.
@Suite struct ProxyServerDrainTests {
    @Test("SPEC §4: drain returns only once the connections it closed at shutdown_grace are closed")
    func forcedClosesFinishBeforeDrainReturns() async throws {
        let harness = try await ProxyHarness.start()
        // Requests still in flight at the deadline (the upstream answers after 10 s): quiescing
        // leaves them be, so only the forced close at shutdown_grace ends their connections.
        var connections: [RawConnection] = []
        for _ in 0..<8 {
            let connection = try await RawConnection.open(port: harness.port, group: harness.group)
            try await connection.send("GET /slow?ms=10000 HTTP/1.1\r\nHost: api.example.test\r\n\r\n")
            connections.append(connection)
        }
        let arrived = await HostileInputTests.waitFor(timeout: .seconds(10)) { harness.upstream.requests.count == 8 }
        #expect(arrived, "the upstream got \(harness.upstream.requests.count) of the 8 slow requests")

        let forced = await harness.server.drain(until: .now)
        let open = harness.server.openConnections
        #expect(forced == 8, "8 requests were in flight at the deadline, drain reports \(forced) connections closed")
        // `subgate run` shuts the event loops down right after drain: a close still in flight
        // then completes on a loop that has shut down.
        #expect(open == 0, "drain returned with \(open) of its forced closes not yet done")

        for connection in connections { await connection.close() }
        await harness.upstream.stop()
        try await harness.group.shutdownGracefully()
    }
}
