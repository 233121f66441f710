import ArgumentParser
import Foundation
import PosternWire

// `postern ctl capture`: record one forward into a pcap file on the server while it runs, without
// restarting it with --pcap (`ForwardCaptures`, `/v1/captures`), and download the file.

extension CtlCommand {
    struct Capture: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Record one forward into a pcap file on the server (start, stop, list, get).",
            discussion: """
                The server writes each capture into its state directory's captures/ (files 0600), stops it \
                at --max-bytes, when the forward is removed and when the server stops; `get` downloads the \
                file. Connections and UDP flows of the forward that begin after `start` are recorded (a \
                server-side UDP forward's socket at once).
                """,
            subcommands: [Start.self, Stop.self, List.self, Get.self], defaultSubcommand: List.self)

        static func line(_ c: [String: Any]) -> String {
            var out = "\(c["id"] ?? "?")  \(c["state"] ?? "?")  forward \(c["forward"] ?? "?")  \(c["packets"] ?? 0) packets  "
            out += "\(c["bytes"] ?? 0)/\(c["maxBytes"] ?? 0) bytes  file \(c["file"] ?? "?")"
            if let dropped = c["dropped"] as? Int, dropped > 0 { out += "  dropped \(dropped)" }
            if let reason = c["reason"] as? String { out += "  (\(reason))" }
            return out + "\n"
        }

        struct Start: ParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Start recording a forward.")
            @ParentCommand var ctl: CtlCommand
            @OptionGroup var here: Options
            var options: Options { here.merged(ctl.options) }
            @Argument(
                help: "The forward: its spec as `ctl forwards` shows it, or its listening address (NAME/ADDR:PORT for one on a mediator).")
            var forward: String
            @Option(help: "Stop the capture when its file reaches this many bytes (1024 to 67108864; default 8388608).")
            var maxBytes: Int?

            func run() throws {
                var body: [String: Any] = ["forward": forward]
                if let maxBytes { body["maxBytes"] = maxBytes }
                let data = try JSONSerialization.data(withJSONObject: body)
                try CtlCommand.finish(try options.client().request("POST", "/v1/captures/start", body: data), json: options.json) { o in
                    "capture " + Capture.line(o as? [String: Any] ?? [:])
                }
            }
        }

        struct Stop: ParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Stop a capture (its file is kept for `get`).")
            @ParentCommand var ctl: CtlCommand
            @OptionGroup var here: Options
            var options: Options { here.merged(ctl.options) }
            @Argument(help: "The capture's id.") var id: Int

            func run() throws {
                let data = try JSONSerialization.data(withJSONObject: ["id": id])
                try CtlCommand.finish(try options.client().request("POST", "/v1/captures/stop", body: data), json: options.json) { o in
                    "capture " + Capture.line(o as? [String: Any] ?? [:])
                }
            }
        }

        struct List: ParsableCommand {
            static let configuration = CommandConfiguration(abstract: "List the captures, running and kept.")
            @ParentCommand var ctl: CtlCommand
            @OptionGroup var here: Options
            var options: Options { here.merged(ctl.options) }

            func run() throws {
                try CtlCommand.finish(try options.client().request("GET", "/v1/captures"), json: options.json) { o in
                    let list = o as? [[String: Any]] ?? []
                    return list.isEmpty ? "no captures\n" : list.map(Capture.line).joined()
                }
            }
        }

        struct Get: ParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Download a capture's pcap file.")
            @ParentCommand var ctl: CtlCommand
            @OptionGroup var here: Options
            var options: Options { here.merged(ctl.options) }
            @Argument(help: "The capture's id.") var id: Int
            @Option(help: "Write it to this file (- for standard output).") var to: String

            func run() throws {
                let result = try options.client().request("GET", "/v1/captures/\(id)/pcap")
                guard (200..<300).contains(result.status) else {
                    return try CtlCommand.finish(result, json: options.json) { _ in "" }
                }
                if to == "-" {
                    FileHandle.standardOutput.write(result.body)
                    return
                }
                guard FileManager.default.createFile(atPath: to, contents: result.body, attributes: [.posixPermissions: 0o600]) else {
                    throw ValidationError("cannot write \(to)")
                }
                FileHandle.standardError.write(Data("capture \(id): \(result.body.count) bytes written to \(to)\n".utf8))
            }
        }
    }
}
