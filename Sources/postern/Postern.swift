import ArgumentParser
import Foundation
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

    /// ArgumentParser's own `main`, except for a `ValidationError` thrown by a subcommand's `run()`
    /// (`ctl forwards add` without its FORWARD): ArgumentParser knows only the root command there and
    /// printed `Usage: postern <subcommand>`; this prints the usage of the subcommand that was run.
    static func main() async {
        let command: ParsableCommand
        do {
            command = try await asyncParseAsRoot(nil)
        } catch {
            exit(withError: error)
        }
        do {
            var running = command
            if var async = running as? AsyncParsableCommand {
                try await async.run()
            } else {
                try running.run()
            }
        } catch let error as ValidationError {
            FileHandle.standardError.write(Data(usageError(error.message, of: type(of: command)).utf8))
            Foundation.exit(ExitCode.validationFailure.rawValue)
        } catch {
            exit(withError: error)
        }
    }

    /// The text of a usage error of `command` (a subcommand of `postern`), as ArgumentParser words
    /// those it finds while parsing.
    static func usageError(_ message: String, of command: ParsableCommand.Type) -> String {
        let usage = usageString(for: command)
        // The command's path ("postern ctl forwards") is the usage up to its first option or argument.
        let path = usage.split(separator: " ").prefix { !"[<-".contains($0.first ?? "-") }.joined(separator: " ")
        return "Error: \(message)\nUsage: \(usage)\n  See '\(path) --help' for more information.\n"
    }
}
