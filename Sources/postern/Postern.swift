import ArgumentParser

@main
struct Postern: AsyncParsableCommand {
    static let version = "0.1.0"

    static let configuration = CommandConfiguration(
        commandName: "postern",
        abstract: "Use the IP interface of a private network through a mediator that dials out.",
        version: version,
        subcommands: [
            ServerCommand.self, MediatorCommand.self, CtlCommand.self, FingerprintCommand.self, DemoCommand.self, ReplayCommand.self,
        ]
    )
}
