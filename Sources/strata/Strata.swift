import ArgumentParser

@main
struct Strata: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "strata",
        abstract: "Strata, a multi-tenant event store.",
        subcommands: [ServeCommand.self, AppendCommand.self, ReadCommand.self, InfoCommand.self, DeleteCommand.self,
                      SubscribeCommand.self, AtCommand.self, BetweenCommand.self, SnapshotCommand.self, ProjectionCommand.self,
                      TenantCommand.self, KeyCommand.self, ConformanceCommand.self,
                      BenchCommand.self]
    )
}
