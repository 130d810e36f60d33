import ArgumentParser
import NIOCore
import SubgateBenchCore

/// `subgate-bench upstream --listen ADDR`: the bench's origin.
struct UpstreamCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "upstream",
        abstract: "A minimal, fast HTTP/1.1 origin for benchmarks: 200 with a fixed body, optional fixed delay.",
        discussion: """
            Every request is answered 200 (content-type application/json) once its body has been
            read. Request headers it honours: x-bench-answer-bytes: N (body size of this answer),
            x-bench-usage: N (adds x-subgate-usage: N, which Subgate bills and removes).
            Prints 'upstream listening on http://HOST:PORT' and serves until killed.
            """
    )

    @Option(help: "host:port to listen on (loopback); port 0 picks a free one.")
    var listen: String = "127.0.0.1:3000"

    @Option(name: .customLong("delay-ms"), help: "Hold each answer this many milliseconds.")
    var delayMs: Int = 0

    @Option(name: .customLong("body-bytes"), help: "Body size of an answer.")
    var bodyBytes: Int = 100

    @Option(help: "Event-loop threads.")
    var threads: Int = 1

    func parsed() throws -> BenchTarget {
        switch BenchTarget.parse("http://\(self.listen)/") {
        case .success(let target): return target
        case .failure(let problem): throw ValidationError("--listen: \(problem.message)")
        }
    }

    func validate() throws {
        _ = try self.parsed()
        guard (0...600_000).contains(self.delayMs) else { throw ValidationError("--delay-ms must be between 0 and 600000.") }
        guard (0...(1 << 30)).contains(self.bodyBytes) else { throw ValidationError("--body-bytes must be between 0 and 1073741824.") }
        guard (1...64).contains(self.threads) else { throw ValidationError("--threads must be between 1 and 64.") }
    }

    func run() async throws {
        let target = try self.parsed()
        try await UpstreamServer.run(
            .init(host: target.host, port: target.port, delay: .milliseconds(Int64(self.delayMs)), bodyBytes: self.bodyBytes, threads: self.threads)
        )
    }
}
