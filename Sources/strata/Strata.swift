import ArgumentParser

@main
struct Strata: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "strata",
        abstract: "Strata, a multi-tenant event store.",
        subcommands: [ServeCommand.self, BenchCommand.self]
    )
}
