import ArgumentParser
import Logging
import PosternTunnel

struct LogOptions: ParsableArguments {
    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error.")
    var logLevel: String = "info"

    @Option(name: .long, help: "Log format: text (default), or json: one JSON object per line, for log shippers.")
    var logFormat: String = "text"

    func makeLogger(_ label: String) throws -> Logger {
        guard let level = Logger.Level(rawValue: logLevel) else {
            throw ValidationError("unknown log level '\(logLevel)'")
        }
        switch logFormat {
        case "text": LoggingSystem.bootstrap { StreamLogHandler.standardError(label: $0) }
        case "json": LoggingSystem.bootstrap { JSONLogHandler(label: $0) }
        default: throw ValidationError("unknown log format '\(logFormat)' (text or json)")
        }
        var logger = Logger(label: label)
        logger.logLevel = level
        return logger
    }
}
