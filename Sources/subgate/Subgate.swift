import ArgumentParser

/// The `subgate` executable: one binary, several commands (shared/SPEC.md §1).
@main
struct Subgate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "subgate",
        abstract: "A sidecar reverse proxy that enforces paid-API subscriptions in front of a seller's HTTP service.",
        discussion: """
            Exit codes: 0 success, 1 bad configuration or start-up failure, 64 bad command-line usage.
            The configuration file is key=value; see docs/configuration.md.
            """,
        version: "0.1.0",
        subcommands: [RunCommand.self, CheckCommand.self, DemoCommand.self, SimulateCommand.self, HealthcheckCommand.self]
    )
}
