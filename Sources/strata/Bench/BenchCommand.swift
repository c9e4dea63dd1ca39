import ArgumentParser

struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Benchmarks that print figures.",
        subcommands: [StorageBenchCommand.self, AppendBenchCommand.self, ReadBenchCommand.self, SubscribeBenchCommand.self, ProjectionBenchCommand.self,
                      TemporalBenchCommand.self]
    )
}
