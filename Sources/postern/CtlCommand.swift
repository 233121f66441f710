import ArgumentParser
import Foundation
import NIOSSL
import PosternAdminClient
import PosternCore
import PosternTLS
import PosternWire

/// `postern ctl`: the admin API from the shell. Every operation of the remote socket API can be
/// driven by hand against a named mediator.
struct CtlCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ctl",
        abstract: "Inspect mediators and drive their ports through the server's admin API.",
        subcommands: [
            Mediators.self, Ports.self, Open.self, Redirect.self, Connect.self, Listen.self, Close.self, Events.self, Status.self,
            Reload.self, Forwards.self, Ping.self, Traceroute.self, Capture.self,
        ]
    )

    /// Accepted before the subcommand (`ctl --admin URL mediators`) and after it.
    @OptionGroup var options: Options

    struct Options: ParsableArguments {
        @Option(help: "Admin API URL (default $POSTERN_ADMIN or http://127.0.0.1:7070).")
        var admin: String?

        @Option(help: "File holding the admin token (default $POSTERN_ADMIN_TOKEN, else the server's STATE_DIR/admin.token).")
        var tokenFile: String?

        @Option(help: "The server's state directory, where it keeps admin.token (default $POSTERN_STATE_DIR, /var/lib/postern as root).")
        var stateDir: String?

        @Flag(help: "Print the API's JSON instead of a summary.")
        var json = false

        @Option(
            help: ArgumentHelp(
                "For an https:// admin URL: the server's TLS key fingerprint (as `postern fingerprint` prints it). Default: the key of the certificate in the server's state directory.",
                valueName: "sha256:hex"))
        var adminPin: String?

        @Option(help: "For an https:// admin URL: a CA file (PEM) the admin API's certificate must chain to and that names its host.")
        var adminCa: String?

        @Option(help: "Seconds a request may take in all: connects, TLS, the answer (default 60; for events, until the stream starts).")
        var adminTimeout: Double?

        @Option(help: "Seconds to wait for each address of the admin host to take the connection before trying the next (default 5).")
        var adminConnectTimeout: Double?

        /// Options given after the subcommand win over those given before it.
        func merged(_ parent: Options) -> Options {
            var m = self
            m.admin = admin ?? parent.admin
            m.tokenFile = tokenFile ?? parent.tokenFile
            m.stateDir = stateDir ?? parent.stateDir
            m.json = json || parent.json
            m.adminPin = adminPin ?? parent.adminPin
            m.adminCa = adminCa ?? parent.adminCa
            m.adminTimeout = adminTimeout ?? parent.adminTimeout
            m.adminConnectTimeout = adminConnectTimeout ?? parent.adminConnectTimeout
            return m
        }

        func client() throws -> AdminClient {
            let env = ProcessInfo.processInfo.environment
            var client = try AdminClient(url: admin ?? env["POSTERN_ADMIN"] ?? "http://127.0.0.1:7070", token: try token(env))
            if let t = adminTimeout {
                guard t > 0, t <= 86400 else { throw ValidationError("--admin-timeout must be between 0 and 86400 seconds") }
                client.timeout = .nanoseconds(Int64(t * 1e9))
            }
            if let t = adminConnectTimeout {
                guard t > 0, t <= 3600 else { throw ValidationError("--admin-connect-timeout must be between 0 and 3600 seconds") }
                client.connectTimeout = .nanoseconds(Int64(t * 1e9))
            }
            if client.secure {
                client.tls = try AdminClientTLS(trust: try trust())
            } else if adminPin != nil || adminCa != nil {
                throw ValidationError("--admin-pin and --admin-ca verify an https:// admin URL; this one is plain http://")
            }
            return client
        }

        /// How ctl verifies an admin API served over TLS: the pin, the CA file, or else the key of the
        /// certificate the server keeps in its state directory (root on the server host needs no flag).
        private func trust() throws -> AdminClientTLS.Trust {
            switch (adminPin, adminCa) {
            case (let pin?, nil):
                guard let fingerprint = KeyFingerprint(parsing: pin) else {
                    throw ValidationError("--admin-pin '\(pin)' is not a key fingerprint (sha256: and 64 hex digits)")
                }
                return .pinned(fingerprint, source: "--admin-pin")
            case (nil, let file?):
                return .certificateAuthority(file: file)
            case (nil, nil):
                let file = StateDirectory.resolve(stateDir) + "/server.crt"
                guard FileManager.default.isReadableFile(atPath: file), let leaf = try? NIOSSLCertificate.fromPEMFile(file).first,
                    let fingerprint = try? ServerIdentity.fingerprint(of: leaf)
                else {
                    throw ValidationError(
                        "an https:// admin URL needs a way to verify the server: --admin-pin (its key, from `postern fingerprint`) or --admin-ca (no readable \(file) to take the key from)"
                    )
                }
                return .pinned(fingerprint, source: "the key of \(file)")
            default:
                throw ValidationError("give --admin-pin or --admin-ca, not both")
            }
        }

        /// `--token-file`, else $POSTERN_ADMIN_TOKEN, else the token the server keeps in its state
        /// directory: root and the server's own user need no flag at all.
        private func token(_ env: [String: String]) throws -> String? {
            if let tokenFile {
                let fd = open(tokenFile, O_RDONLY | O_CLOEXEC)
                // Not a usage error: the flag is right, the file cannot be read (exit 1, no usage text).
                guard fd >= 0 else {
                    throw AdminTokenFile.Failure(description: "cannot read --token-file \(tokenFile): \(String(cString: strerror(errno)))")
                }
                defer { close(fd) }
                return try AdminTokenFile.tokenText(fd, tokenFile)
            }
            if let token = env["POSTERN_ADMIN_TOKEN"], !token.isEmpty { return token }
            return try AdminTokenFile.read(directory: StateDirectory.resolve(stateDir))
        }
    }

    /// Prints a successful answer, or the error and exit status 1.
    static func finish(_ result: (status: Int, body: Data), json: Bool, summary: (Any) -> String) throws {
        let object = try? JSONSerialization.jsonObject(with: result.body)
        guard (200..<300).contains(result.status) else {
            let dict = object as? [String: Any]
            let message = dict?["message"] as? String ?? ""
            let code = dict?["error"] as? String ?? "HTTP \(result.status)"
            // The message may be a mediator's FAILED text: shown sanitised, like everything a peer wrote,
            // with room for a long one: a refused reload's reason (the file, the key and the keys it
            // allows) was cut at 256 characters, before the part that said what to write instead.
            let shown = PeerText.sanitized(message, maxLength: 4096)
            let said = PeerText.sanitized(code, maxLength: 4096)
            FileHandle.standardError.write(Data("error: \(said)\(shown.isEmpty ? "" : ": \(shown)")\n".utf8))
            throw ExitCode(1)
        }
        if json || object == nil {
            FileHandle.standardOutput.write(result.body)
        } else {
            // Host and interface names, versions and messages in a summary come from mediators: each
            // line is sanitised (no control characters reach the terminal), with room for long lines.
            let lines = summary(object!).split(separator: "\n", omittingEmptySubsequences: false)
            print(lines.map { PeerText.sanitized(String($0), maxLength: 4096) }.joined(separator: "\n"), terminator: "")
        }
    }

    /// Writes one line to standard output at once (a stream is read as it comes). NIO ignores SIGPIPE
    /// for the whole process, so a reader that went away (`ctl events | head -1`) shows only as a
    /// failed write: ctl then ends as SIGPIPE would have ended it, instead of following the stream
    /// for nobody until the server closes it.
    static func writeLine(_ line: String) {
        var bytes = Array(line.utf8)
        bytes.append(UInt8(ascii: "\n"))
        var done = 0
        while done < bytes.count {
            let n = bytes[done...].withUnsafeBytes { write(STDOUT_FILENO, $0.baseAddress, $0.count) }
            if n > 0 {
                done += n
            } else if n < 0, errno == EINTR {
                continue
            } else {
                signal(SIGPIPE, SIG_DFL)
                raise(SIGPIPE)
                Foundation.exit(141)
            }
        }
    }

    /// The admin API's path of a mediator. The name goes into the URL as it is, so anything but a
    /// name a mediator may have (`--name`'s rule) is refused here: `a b` made a broken request, `x?y`
    /// or an empty name asked about another mediator.
    static func mediatorPath(_ mediator: String) throws -> String {
        guard MediatorName.isValid(mediator) else {
            throw ValidationError("'\(mediator)' is not a mediator name: names are 1-64 letters, digits, '-', '_' or '.'")
        }
        return "/v1/mediators/\(mediator)"
    }

    static func post(_ options: Options, _ mediator: String, _ op: String, _ body: [String: Any]) throws {
        let data = try JSONSerialization.data(withJSONObject: body)
        let result = try options.client().request("POST", try mediatorPath(mediator) + "/\(op)", body: data)
        try finish(result, json: options.json) { o in
            let d = o as? [String: Any] ?? [:]
            return "port \(d["port"] ?? "?") local \(d["local"] ?? "?")\n"
        }
    }

    struct Mediators: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List connected mediators and their environment.")
        @ParentCommand var ctl: CtlCommand
        @OptionGroup var here: Options
        var options: Options { here.merged(ctl.options) }

        /// One tun device's offloads as `ctl mediators` prints them (its JSON's `offload`).
        static func offloadText(_ o: [String: Any]) -> String {
            let offloads = (o["asked"] as? Bool ?? true) ? "\(o["offloads"] ?? "?")" : "off (--tun-offload off)"
            return
                "offloads \(offloads)  super-packets read \(o["superPacketsRead"] ?? 0)  merged writes \(o["coalescedWrites"] ?? 0)  refused \(o["offloadRefused"] ?? 0)"
        }

        func run() throws {
            try CtlCommand.finish(try options.client().request("GET", "/v1/mediators"), json: options.json) { o in
                let list = o as? [[String: Any]] ?? []
                if list.isEmpty { return "no mediators connected\n" }
                var out = ""
                for m in list {
                    let caps = (m["capabilities"] as? [String] ?? []).joined(separator: ",")
                    out +=
                        "\(m["name"] ?? "?")  session \(m["session"] ?? "?")  from \(m["from"] ?? "?")  host \(m["hostname"] ?? "?")  postern \(m["softwareVersion"] ?? "?")  ports \(m["ports"] ?? 0)\(caps.isEmpty ? "" : "  caps \(caps)")\n"
                    if let d = m["datagrams"] as? [String: Any] {
                        let n = { (k: String) in "\(d[k] ?? 0)" }
                        out +=
                            "  datagrams via \(d["path"] ?? "?")  udp channel: sent \(n("sent")) received \(n("received")) delivered \(n("delivered"))  dropped: forged \(n("forged")) replayed \(n("replayed")) truncated \(n("truncated")) stray \(n("stray")) malformed \(n("malformed"))  migrations \(n("migrations"))  unrouted (server) \(n("unrouted"))\n"
                    }
                    if let t = m["tun"] as? [String: Any] {
                        let dropped = (t["dropped"] as? [String: Any] ?? [:]).sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }
                        let prefixes = (t["prefixes"] as? [String] ?? []).joined(separator: ",")
                        out +=
                            "  tun \(t["device"] ?? "?") \(t["status"] ?? "?")  address \(t["address"] ?? "-")\(t["secondAddress"].map { " \($0)" } ?? "")  prefixes \(prefixes.isEmpty ? "-" : prefixes)  packets to LAN \(t["toLAN"] ?? 0) from LAN \(t["fromLAN"] ?? 0)  dropped \(dropped.isEmpty ? "0" : dropped.joined(separator: " "))\n"
                        if let o = t["offload"] as? [String: Any] { out += "  tun device at the server: \(Self.offloadText(o))\n" }
                        if let c = t["mediator"] as? [String: Any] {
                            let dropped = (c["dropped"] as? [String: Any] ?? [:]).sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }
                            out +=
                                "  tun at the mediator: packets to LAN \(c["toLAN"] ?? 0) from LAN \(c["fromLAN"] ?? 0)  dropped \(dropped.isEmpty ? "0" : dropped.joined(separator: " "))  too-big errors \(c["fragmentationNeeded"] ?? 0)\n"
                            if let o = c["offload"] as? [String: Any] { out += "  tun device at the mediator: \(Self.offloadText(o))\n" }
                        }
                    }
                    for i in m["interfaces"] as? [[String: Any]] ?? [] {
                        let addrs = (i["addresses"] as? [String] ?? []).joined(separator: " ")
                        let up = (i["up"] as? Bool ?? false) ? "up" : "down"
                        out += "  \(i["name"] ?? "?")  mac \(i["mac"] ?? "")  mtu \(i["mtu"] ?? "?")  \(up)  \(addrs)\n"
                    }
                    for r in m["defaultRoutes"] as? [[String: Any]] ?? [] {
                        out += "  route \(r["destination"] ?? "?") via \(r["gateway"] ?? "direct") dev \(r["interface"] ?? "?")\n"
                    }
                }
                return out
            }
        }
    }

    struct Ports: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the ports of a mediator.")
        @ParentCommand var ctl: CtlCommand
        @OptionGroup var here: Options
        var options: Options { here.merged(ctl.options) }
        @Argument(help: "Mediator name.") var mediator: String

        func run() throws {
            try CtlCommand.finish(try options.client().request("GET", try CtlCommand.mediatorPath(mediator) + "/ports"), json: options.json)
            { o in
                let list = o as? [[String: Any]] ?? []
                if list.isEmpty { return "no ports\n" }
                return list.map { p in
                    "\(p["id"] ?? "?")  \(p["transport"] ?? "?")  \(p["kind"] ?? "?")  local \(p["local"] ?? "?")\((p["remote"] as? String).map { "  remote \($0)" } ?? "")  owner \(p["owner"] ?? "?")\n"
                }.joined()
            }
        }
    }

    struct Open: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Open a TCP or UDP port on the mediator.")
        @ParentCommand var ctl: CtlCommand
        @OptionGroup var here: Options
        var options: Options { here.merged(ctl.options) }
        @Argument(help: "Mediator name.") var mediator: String
        @Argument(help: "tcp or udp.") var transport: String
        @Argument(help: "[ADDR:]PORT to bind (0 = any free port).") var local: String
        @Flag(help: "Take the first free port from PORT upwards instead of exactly PORT.") var firstFree = false

        func run() throws {
            let (address, port) = try CtlCommand.splitLocal(local)
            try CtlCommand.post(options, mediator, "open", ["transport": transport, "address": address, "port": port, "exact": !firstFree])
        }
    }

    struct Redirect: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract:
                "Redirect a UDP port of the mediator: every LAN sender's datagrams come over the UDP channel (needs --allow-redirect).")
        @ParentCommand var ctl: CtlCommand
        @OptionGroup var here: Options
        var options: Options { here.merged(ctl.options) }
        @Argument(help: "Mediator name.") var mediator: String
        @Argument(help: "[ADDR:]PORT to bind.") var local: String
        @Flag(help: "Take the first free port from PORT upwards.") var firstFree = false
        @Option(
            help: ArgumentHelp(
                "Relay each LAN sender's datagrams to HOST:PORT (from the server) and its answers back; without it they show as events.",
                valueName: "host:port"))
        var to: String?

        func run() throws {
            let (address, port) = try CtlCommand.splitLocal(local)
            var body: [String: Any] = ["address": address, "port": port, "exact": !firstFree]
            if let to { body["destination"] = to }
            try CtlCommand.post(options, mediator, "redirect", body)
        }
    }

    struct Connect: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Connect an opened TCP port (0 opens one) to a destination.")
        @ParentCommand var ctl: CtlCommand
        @OptionGroup var here: Options
        var options: Options { here.merged(ctl.options) }
        @Argument(help: "Mediator name.") var mediator: String
        @Argument(help: "Port id from open, or 0.") var port: UInt32
        @Argument(help: "Destination HOST:PORT as seen from the mediator.") var destination: String

        func run() throws {
            try CtlCommand.post(options, mediator, "connect", ["port": port, "destination": destination])
        }
    }

    struct Listen: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Make an opened TCP port a server; accepted connections show as events.")
        @ParentCommand var ctl: CtlCommand
        @OptionGroup var here: Options
        var options: Options { here.merged(ctl.options) }
        @Argument(help: "Mediator name.") var mediator: String
        @Argument(help: "Port id from open.") var port: UInt32
        @Option(help: "Listen backlog.") var backlog: UInt16 = 128

        func run() throws {
            try CtlCommand.post(options, mediator, "listen", ["port": port, "backlog": backlog])
        }
    }

    struct Close: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Close a port of the mediator.")
        @ParentCommand var ctl: CtlCommand
        @OptionGroup var here: Options
        var options: Options { here.merged(ctl.options) }
        @Argument(help: "Mediator name.") var mediator: String
        @Argument(help: "Port id.") var port: UInt32

        func run() throws {
            try CtlCommand.post(options, mediator, "close", ["port": port])
        }
    }

    struct Events: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Follow the server's event stream (JSON lines).")
        @ParentCommand var ctl: CtlCommand
        @OptionGroup var here: Options
        var options: Options { here.merged(ctl.options) }
        @Flag(help: "Replay recent events first.") var history = false

        func run() throws {
            try options.client().stream("/v1/events" + (history ? "?history=1" : "")) { CtlCommand.writeLine($0) }
        }
    }

    struct Status: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show the server's version and uptime, each mediator, and each forward with its state and counters.")
        @ParentCommand var ctl: CtlCommand
        @OptionGroup var here: Options
        var options: Options { here.merged(ctl.options) }

        func run() throws {
            try CtlCommand.finish(try options.client().request("GET", "/v1/status"), json: options.json) { o in
                CtlCommand.statusTable(o as? [String: Any] ?? [:])
            }
        }
    }

    struct Reload: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract:
                "Make the server read its configuration again and apply its forwards and SOCKS5 listeners: unchanged ones keep their connections; a broken configuration is refused whole (as SIGHUP does)."
        )
        @ParentCommand var ctl: CtlCommand
        @OptionGroup var here: Options
        var options: Options { here.merged(ctl.options) }

        func run() throws {
            let result = try options.client().request("POST", "/v1/reload", body: Data("{}".utf8))
            try CtlCommand.finish(result, json: options.json) { o in
                let d = o as? [String: Any] ?? [:]
                var out = ""
                for key in ["added", "removed", "unchanged"] {
                    for spec in d[key] as? [String] ?? [] { out += "\(key)  \(spec)\n" }
                }
                if out.isEmpty { out = "no forwards configured\n" }
                // Changed in the file, not applied: said, or the reload reads as if they were in force.
                for key in d["restartNeeded"] as? [String] ?? [] { out += "not applied (needs a restart)  \(key)\n" }
                return out
            }
        }
    }

    struct Forwards: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract:
                "List the forwards (state and counters), or add or remove one while the server runs (an added one is kept across reloads, until removed or a restart)."
        )
        @ParentCommand var ctl: CtlCommand
        @OptionGroup var here: Options
        var options: Options { here.merged(ctl.options) }
        @Argument(help: "list, add or remove.") var action: String = "list"
        @Argument(help: "The forward, as for --forward, or a SOCKS5 listener as socks:ADDR:PORT=NAME (add, remove).") var spec: String?

        func run() throws {
            switch (action, spec) {
            case ("list", nil) where options.json:
                try CtlCommand.finish(try options.client().request("GET", "/v1/forwards"), json: true) { _ in "" }
            case ("list", nil):
                // From the status, which holds the SOCKS5 listeners too.
                try CtlCommand.finish(try options.client().request("GET", "/v1/status"), json: false) { o in
                    let s = o as? [String: Any] ?? [:]
                    return CtlCommand.forwardsTable(s["forwards"] as? [[String: Any]] ?? [])
                        + CtlCommand.socksTable(s["socks"] as? [[String: Any]] ?? [])
                }
            case ("add", let spec?), ("remove", let spec?):
                let body = try JSONSerialization.data(withJSONObject: ["spec": spec])
                let result = try options.client().request("POST", "/v1/forwards/\(action)", body: body)
                try CtlCommand.finish(result, json: options.json) { o in
                    let d = o as? [String: Any] ?? [:]
                    return ["added", "removed"].flatMap { key in (d[key] as? [String] ?? []).map { "\(key)  \($0)\n" } }.joined()
                }
            default:
                throw ValidationError("use: ctl forwards [list] | add FORWARD | remove FORWARD (FORWARD may be socks:ADDR:PORT=NAME)")
            }
        }
    }

    /// `ctl status` as aligned columns: one table of mediators, one of forwards.
    static func statusTable(_ s: [String: Any]) -> String {
        let uptime = Int((s["uptimeSeconds"] as? Double) ?? 0)
        var out = "postern \(s["version"] ?? "?")  up \(uptime / 86400)d \(uptime % 86400 / 3600)h \(uptime % 3600 / 60)m \(uptime % 60)s"
        if let p = s["process"] as? [String: Any] {
            out += "  rss \(((p["residentBytes"] as? Int) ?? 0) / 1_048_576) MiB  fds \(p["openFiles"] ?? 0)"
        }
        out += "\n\n"
        let mediators = s["mediators"] as? [[String: Any]] ?? []
        var rows = [["MEDIATOR", "STATE", "FROM", "SESSIONS", "PORTS", "IN", "OUT", "DATAGRAMS", "RTT TCP", "RTT UDP"]]
        for m in mediators {
            let connected = m["connected"] as? Bool ?? false
            let rtt = (m["keepaliveRTTSeconds"] as? Double).map { String(format: "%.1fms", $0 * 1000) } ?? "-"
            let udpRTT = (m["udpKeepaliveRTTSeconds"] as? Double).map { String(format: "%.1fms", $0 * 1000) } ?? "-"
            rows.append([
                "\(m["name"] ?? "?")", connected ? "connected" : "disconnected", "\(m["from"] ?? "-")", "\(m["sessions"] ?? 0)",
                "\(m["ports"] ?? 0)", bytes(m["bytesIn"]), bytes(m["bytesOut"]), connected ? "\(m["datagramPath"] ?? "?")" : "-", rtt,
                udpRTT,
            ])
        }
        out += mediators.isEmpty ? "no mediators seen yet\n" : columns(rows)
        out += "\n"
        out += forwardsTable(s["forwards"] as? [[String: Any]] ?? [])
        out += socksTable(s["socks"] as? [[String: Any]] ?? [])
        return out
    }

    /// The SOCKS5 listeners, after the forwards; nothing when there are none.
    static func socksTable(_ listeners: [[String: Any]]) -> String {
        guard !listeners.isEmpty else { return "" }
        var rows = [["SOCKS5 LISTENER", "STATE", "AUTH", "OPEN", "TOTAL", "HANDSHAKING", "REFUSED"]]
        for l in listeners {
            var state = "\(l["state"] ?? "?")"
            if let reason = l["reason"] as? String { state += ": \(reason)" }
            rows.append([
                "\(l["spec"] ?? "?")", state, "\(l["authentication"] ?? "?")", "\(l["connectionsOpen"] ?? 0)",
                "\(l["connectionsTotal"] ?? 0)", "\(l["handshaking"] ?? 0)", "\(l["refusals"] ?? 0)",
            ])
        }
        return "\n" + columns(rows)
    }

    static func forwardsTable(_ forwards: [[String: Any]]) -> String {
        var rows = [["FORWARD", "STATE", "OPEN", "TOTAL", "TO MEDIATOR", "FROM MEDIATOR", "REFUSED", "DENIED", "ERRORS"]]
        for f in forwards {
            var state = "\(f["state"] ?? "?")"
            if let reason = f["reason"] as? String { state += ": \(reason)" }
            rows.append([
                "\(f["spec"] ?? "?")", state, "\(f["connectionsOpen"] ?? 0)", "\(f["connectionsTotal"] ?? 0)", bytes(f["bytesToMediator"]),
                bytes(f["bytesFromMediator"]), "\(f["refusals"] ?? 0)", "\(f["policyDenials"] ?? 0)", "\(f["errors"] ?? 0)",
            ])
        }
        return forwards.isEmpty ? "no forwards configured\n" : columns(rows)
    }

    private static func bytes(_ v: Any?) -> String {
        let n = (v as? NSNumber)?.doubleValue ?? 0
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var x = n
        var i = 0
        while x >= 1024, i < units.count - 1 {
            x /= 1024
            i += 1
        }
        return i == 0 ? "\(Int(n)) B" : String(format: "%.1f %@", x, units[i])
    }

    private static func columns(_ rows: [[String]]) -> String {
        var widths = [Int](repeating: 0, count: rows.map(\.count).max() ?? 0)
        for r in rows { for (i, c) in r.enumerated() { widths[i] = max(widths[i], c.count) } }
        return rows.map { r in
            r.enumerated().map { i, c in i == r.count - 1 ? c : c.padding(toLength: widths[i], withPad: " ", startingAt: 0) }.joined(
                separator: "  ")
        }.joined(separator: "\n") + "\n"
    }

    static func splitLocal(_ text: String) throws -> (String, Int) {
        if let p = Int(text) { return ("0.0.0.0", p) }
        guard let colon = text.lastIndex(of: ":"), let p = Int(text[text.index(after: colon)...]) else {
            throw ValidationError("'\(text)' is not [ADDR:]PORT")
        }
        var a = String(text[..<colon])
        if a.hasPrefix("[") { a = String(a.dropFirst().dropLast()) }
        return (a, p)
    }
}
