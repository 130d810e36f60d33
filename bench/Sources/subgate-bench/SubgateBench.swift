import ArgumentParser

/// `subgate-bench`: the load generator and the pieces around it (issue 5). It never runs in
/// the same process as the proxy it measures.
@main
struct SubgateBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "subgate-bench",
        abstract: "Load generator, bench upstream and simulator helpers for measuring Subgate (loopback only).",
        discussion: """
            bench/run.sh runs the whole comparison (direct, nginx, Subgate in several modes);
            bench/README.md explains every column. All traffic stays on 127.0.0.0/8 or [::1].
            """,
        subcommands: [LoadCommand.self, UpstreamCommand.self, TokensCommand.self, SettleCommand.self, TableCommand.self],
        defaultSubcommand: LoadCommand.self
    )
}
