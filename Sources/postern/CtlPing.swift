import ArgumentParser
import Foundation
import PosternWire

// `postern ctl ping` and `postern ctl traceroute`: ICMP echo requests sent from a mediator, inside its
// LAN (docs/protocol.md §11), one admin API request (`POST /v1/mediators/NAME/echo`) per probe.

extension CtlCommand {
    /// One probe's answer, or the error that stopped it (denied by policy, no ICMP socket...).
    enum EchoResult {
        case answer([String: Any])
        case failed(code: String, message: String)
    }

    static func echo(_ options: Options, _ mediator: String, _ body: [String: Any]) throws -> EchoResult {
        let data = try JSONSerialization.data(withJSONObject: body)
        let result = try options.client().request("POST", try CtlCommand.mediatorPath(mediator) + "/echo", body: data)
        let object = (try? JSONSerialization.jsonObject(with: result.body)) as? [String: Any] ?? [:]
        guard (200..<300).contains(result.status) else {
            return .failed(
                code: PeerText.sanitized(object["error"] as? String ?? "HTTP \(result.status)"),
                message: PeerText.sanitized(object["message"] as? String ?? ""))
        }
        return .answer(object)
    }

    static func stop(_ code: String, _ message: String) -> ExitCode {
        // After what went to stdout before it (the PING line), also through a pipe.
        fflush(stdout)
        FileHandle.standardError.write(Data("error: \(code)\(message.isEmpty ? "" : ": \(message)")\n".utf8))
        return ExitCode(2)
    }

    /// "Destination Host Unreachable", as ping(8) words the ICMP unreachable codes.
    static func unreachableText(_ code: Int) -> String {
        switch code {
        case 0: return "Destination Net Unreachable"
        case 1: return "Destination Host Unreachable"
        case 2: return "Destination Protocol Unreachable"
        case 3: return "Destination Port Unreachable"
        case 9, 10, 13: return "Packet filtered"
        default: return "Destination Unreachable, Bad Code: \(code)"
        }
    }

    /// What ping(8) prints for an ICMPv6 error of `type`/`code` (`size` carries a packet too big's
    /// MTU, docs/protocol.md §11.2); nil for types that are not ICMPv6 errors.
    static func icmpv6ErrorText(type: Int, code: Int, size: Int) -> String? {
        switch type {
        case 1:
            let why = [
                0: "No route", 1: "Administratively prohibited", 2: "Beyond scope of source address", 3: "Address unreachable",
                4: "Port unreachable", 5: "Source address failed ingress/egress policy", 6: "Reject route to destination",
            ]
            return "Destination unreachable: \(why[code] ?? "Unknown code \(code)")"
        case 2: return "Packet too big: mtu=\(size)"
        case 3: return code == 0 ? "Time exceeded: Hop limit" : "Time exceeded: Defragmentation failure"
        default: return nil
        }
    }

    /// The error text of an answer, as ping(8) words it for the destination's family.
    static func errorText(_ a: [String: Any]) -> String {
        var ipv6 = false
        if case .v6? = IPAddress(a["from"] as? String ?? "") { ipv6 = true }
        let type = a["type"] as? Int ?? -1
        let code = a["code"] as? Int ?? -1
        if ipv6, let text = icmpv6ErrorText(type: type, code: code, size: a["size"] as? Int ?? 0) { return text }
        return a["outcome"] as? String == "time exceeded" ? "Time to live exceeded" : unreachableText(code)
    }

    /// HOST and `-4`/`-6` checked: an address, or a name the mediator resolves in its LAN (to the
    /// first address of the family asked for).
    static func validateHost(_ host: String, ipv4: Bool, ipv6: Bool) throws {
        guard !(ipv4 && ipv6) else { throw ValidationError("-4 and -6 exclude each other") }
        if let address = IPAddress(host) {
            guard !(ipv4 && address.isIPv6), !(ipv6 && !address.isIPv6) else {
                throw ValidationError("HOST \(host) is not of the family -4/-6 asks for")
            }
            return
        }
        guard !host.isEmpty, host.utf8.count <= 255, host.unicodeScalars.allSatisfy({ $0.value > 0x20 && $0.value != 0x7f }) else {
            throw ValidationError("HOST must be an IP address or a host name (1-255 bytes, no spaces)")
        }
    }

    /// The request fields naming the destination: the host, and the family when a name is given one.
    static func destinationFields(_ host: String, ipv4: Bool, ipv6: Bool) -> [String: Any] {
        var body: [String: Any] = ["destination": host]
        if IPAddress(host) == nil && (ipv4 || ipv6) { body["family"] = ipv4 ? 4 : 6 }
        return body
    }

    static func milliseconds(_ a: [String: Any]) -> Double { Double(a["rttMicros"] as? Int ?? 0) / 1000 }

    struct Ping: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Send ICMP echo requests from a mediator (inside its LAN) and print the replies like ping.")
        @ParentCommand var ctl: CtlCommand
        @OptionGroup var here: Options
        var options: Options { here.merged(ctl.options) }
        @Argument(help: "Mediator name.") var mediator: String
        @Argument(
            help:
                "Destination: an IP address, or a host name the mediator resolves in its LAN (its policy must allow the address: any --allow rule covering it)."
        ) var host: String
        @Flag(name: [.customShort("4"), .customLong("ipv4")], help: "Resolve HOST to an IPv4 address only.") var ipv4 = false
        @Flag(name: [.customShort("6"), .customLong("ipv6")], help: "Resolve HOST to an IPv6 address only.") var ipv6 = false
        @Option(help: "Echo requests to send (1-10000).") var count = 4
        @Option(help: "Seconds between requests.") var interval = 1.0
        @Option(help: "Bytes of payload per request (0-\(Frame.Echo.maxSize)).") var size = 56
        @Option(help: "Seconds to wait for each answer (at most 10).") var timeout = 2.0
        @Option(help: "IP time to live (IPv6: hop limit) of the requests (1-255).") var ttl = 64

        func validate() throws {
            _ = try CtlCommand.mediatorPath(mediator)
            try CtlCommand.validateHost(host, ipv4: ipv4, ipv6: ipv6)
            guard (1...10_000).contains(count) else { throw ValidationError("--count must be 1-10000") }
            guard interval >= 0, interval <= 3600 else { throw ValidationError("--interval must be 0-3600 seconds") }
            guard (0...Int(Frame.Echo.maxSize)).contains(size) else { throw ValidationError("--size must be 0-\(Frame.Echo.maxSize)") }
            guard timeout > 0, timeout <= 10 else { throw ValidationError("--timeout must be more than 0 and at most 10 seconds") }
            guard (1...255).contains(ttl) else { throw ValidationError("--ttl must be 1-255") }
        }

        func run() throws {
            print("PING \(host) from mediator \(mediator): \(size) data bytes")
            var received = 0
            var times: [Double] = []
            var errors = 0
            for sequence in 1...count {
                if sequence > 1 && interval > 0 { Thread.sleep(forTimeInterval: interval) }
                let body = CtlCommand.destinationFields(host, ipv4: ipv4, ipv6: ipv6).merging([
                    "sequence": sequence & 0xffff, "size": size, "ttl": ttl, "timeoutMillis": Int(timeout * 1000),
                ]) { $1 }
                switch try CtlCommand.echo(options, mediator, body) {
                case .failed(let code, let message):
                    throw CtlCommand.stop(code, message)
                case .answer(let a):
                    let from = PeerText.sanitized(a["from"] as? String ?? "?")
                    switch a["outcome"] as? String {
                    case "reply":
                        received += 1
                        let ms = CtlCommand.milliseconds(a)
                        times.append(ms)
                        let bytes = (a["size"] as? Int ?? 0) + 8
                        print(
                            "\(bytes) bytes from \(from): icmp_seq=\(sequence) ttl=\(a["ttl"] ?? 0) time=\(String(format: "%.2f", ms)) ms")
                    case "time exceeded", "unreachable":
                        errors += 1
                        print("From \(from) icmp_seq=\(sequence) \(CtlCommand.errorText(a))")
                    default:
                        print("no answer from \(host): icmp_seq=\(sequence) (timeout \(String(format: "%g", timeout)) s)")
                    }
                }
                fflush(stdout)
            }
            let loss = Int((Double(count - received) / Double(count) * 100).rounded())
            print("\n--- \(host) ping statistics (from mediator \(mediator)) ---")
            print(
                "\(count) packets transmitted, \(received) received\(errors > 0 ? ", +\(errors) errors" : ""), \(loss)% packet loss")
            if let low = times.min(), let high = times.max() {
                let avg = times.reduce(0, +) / Double(times.count)
                print("rtt min/avg/max = \(String(format: "%.3f/%.3f/%.3f", low, avg, high)) ms")
            }
            // As ping(8): 0 when some reply came, 1 when none did.
            if received == 0 { throw ExitCode(1) }
        }
    }

    struct Traceroute: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Trace the route from a mediator to a host with TTL-limited ICMP echo requests, one line per hop.")
        @ParentCommand var ctl: CtlCommand
        @OptionGroup var here: Options
        var options: Options { here.merged(ctl.options) }
        @Argument(help: "Mediator name.") var mediator: String
        @Argument(
            help:
                "Destination: an IP address, or a host name the mediator resolves in its LAN (its policy must allow the address: any --allow rule covering it)."
        ) var host: String
        @Flag(name: [.customShort("4"), .customLong("ipv4")], help: "Resolve HOST to an IPv4 address only.") var ipv4 = false
        @Flag(name: [.customShort("6"), .customLong("ipv6")], help: "Resolve HOST to an IPv6 address only.") var ipv6 = false
        @Option(help: "Largest TTL to try (1-64).") var maxHops = 30
        @Option(help: "Seconds to wait for each hop's answer (at most 10).") var timeout = 2.0

        func validate() throws {
            _ = try CtlCommand.mediatorPath(mediator)
            try CtlCommand.validateHost(host, ipv4: ipv4, ipv6: ipv6)
            guard (1...64).contains(maxHops) else { throw ValidationError("--max-hops must be 1-64") }
            guard timeout > 0, timeout <= 10 else { throw ValidationError("--timeout must be more than 0 and at most 10 seconds") }
        }

        func run() throws {
            print("traceroute to \(host) from mediator \(mediator), \(maxHops) hops max")
            for hop in 1...maxHops {
                let body = CtlCommand.destinationFields(host, ipv4: ipv4, ipv6: ipv6).merging([
                    "sequence": hop, "size": 32, "ttl": hop, "timeoutMillis": Int(timeout * 1000),
                ]) { $1 }
                switch try CtlCommand.echo(options, mediator, body) {
                case .failed(let code, let message):
                    throw CtlCommand.stop(code, message)
                case .answer(let a):
                    let from = PeerText.sanitized(a["from"] as? String ?? "?")
                    let time = String(format: "%.3f ms", CtlCommand.milliseconds(a))
                    switch a["outcome"] as? String {
                    case "reply":
                        print(String(format: "%2d  ", hop) + "\(from)  \(time)")
                        return
                    case "time exceeded":
                        print(String(format: "%2d  ", hop) + "\(from)  \(time)")
                    case "unreachable":
                        print(String(format: "%2d  ", hop) + "\(from)  \(time) !\(CtlCommand.errorText(a))")
                        throw ExitCode(1)
                    default:
                        print(String(format: "%2d  ", hop) + "*")
                    }
                }
                fflush(stdout)
            }
            throw ExitCode(1)
        }
    }
}
