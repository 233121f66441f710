import ArgumentParser
import PosternBuildInfo

@main
struct Postern: AsyncParsableCommand {
    static let version = "0.1.0"
    /// What mediators send in HELLO and ENVIRONMENT and the status API shows: the version with the
    /// build's commit (`BuildInfo`).
    static var softwareVersion: String { BuildInfo.softwareVersion(version) }

    static let configuration = CommandConfiguration(
        commandName: "postern",
        abstract: "Use the IP interface of a private network through a mediator that dials out.",
        version: BuildInfo.versionLine(version),
        subcommands: [
            ServerCommand.self, MediatorCommand.self, CtlCommand.self, FingerprintCommand.self, DemoCommand.self, ReplayCommand.self,
        ]
    )
}
