import ArgumentParser

/// `subgate simulate --listen ADDR`: the control-plane simulator (SPEC §7).
struct SimulateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "simulate",
        abstract: "Run the control-plane simulator (Crochet tokens, Crovver credits, the Crochet gateway) on loopback."
    )

    @Option(name: .long, help: "Address to listen on, host:port.")
    var listen: String = "127.0.0.1:8787"

    func run() async throws {
        throw ValidationError("the simulator is not built yet")
    }
}
