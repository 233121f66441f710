import ArgumentParser
import Foundation
import NIOCore
import PosternCapture
import PosternPcap
import PosternReplay
import PosternWire

/// `postern replay CAPTURE`: replays a capture's TCP and UDP flows through a running tunnel in stream
/// mode and checks that each side received exactly the recorded bytes, in order, with the recorded
/// ending. Two processes play the two sides: `--respond` in the LAN (the responders, behind a forward)
/// and `--to` on the public side (the initiators, through the forward). See README "Replaying captures".
struct ReplayCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "replay",
        abstract: "Replay a capture through a running tunnel and verify it (stream mode).",
        discussion: """
            Run `--respond ADDR` in the LAN (it plays every flow's responder on ADDR, TCP and UDP) and \
            `--to ADDR` on the public side, where ADDR is a forward to the responder's address; a second \
            forward carries the control connection (`--control`, default the port after ADDR's). With \
            neither, the capture's flows are listed.
            """
    )

    @Argument(help: "A pcap or pcapng file.")
    var capture: String

    @Option(help: "Public side: the forward (HOST:PORT) that reaches the responder's TCP address.")
    var to: String?

    @Option(help: "Public side: the forward for UDP flows (default: --to).")
    var udpTo: String?

    @Option(help: "LAN side: play the responders on HOST:PORT (TCP and UDP).")
    var respond: String?

    @Option(help: "The control address: where --respond listens, or the forward --to reaches it by (default: the next port).")
    var control: String?

    @Option(help: "fast (answers pace the replay) or recorded (the capture's timing, see --scale).")
    var timing: String = "fast"

    @Option(help: "With --timing recorded: multiply the capture's intervals (2 = half speed, 0.5 = double).")
    var scale: Double = 1

    @Option(help: "Seconds a flow may take before it counts as failed.")
    var timeout: Int = 20

    @Option(help: "Flows running at once.")
    var parallel: Int = 16

    @Option(
        help: """
            TUN mode: replay IP packets instead of streams: the packets the capture's INITIATOR or RESPONDER \
            sent, with --inject (send them) or --capture-on (receive and check them).
            """)
    var packets: String?

    @Flag(help: "TUN mode: send the packets with a raw socket (needs CAP_NET_RAW).")
    var inject = false

    @Option(help: "TUN mode: with --inject, send on this interface as they are (else routed; the kernel sets IP IDs of 0).")
    var injectOn: String?

    @Option(help: "TUN mode: capture the packets arriving on this interface and check them (start it before --inject).")
    var captureOn: String?

    @Option(
        help: """
            TUN mode: the lab's addresses, INITIATOR=ADDR,RESPONDER=ADDR (both IPv4 or both IPv6), for every replayed \
            conversation of that IP version.
            """)
    var rewrite: String?

    @Option(help: "TUN mode: routers between injection and capture; each lowers the TTL (IPv6: hop limit) by one.")
    var hops: Int = 1

    @Option(help: "TUN mode: larger packets are not replayed (the tunnel devices' MTU; SYNs may arrive with their MSS clamped to it).")
    var mtu: Int = 1_400

    @Flag(help: "Print the report (or the flow list) as JSON.")
    var json = false

    @Flag(help: "No progress line on stderr.")
    var quiet = false

    func validate() throws {
        if to != nil && respond != nil { throw ValidationError("--to (public side) and --respond (LAN side) are the two ends: give one") }
        guard timing == "fast" || timing == "recorded" else { throw ValidationError("--timing is fast or recorded") }
        guard scale > 0, scale.isFinite else { throw ValidationError("--scale must be a positive number") }
        guard timeout > 0 else { throw ValidationError("--timeout must be positive") }
        guard parallel > 0 else { throw ValidationError("--parallel must be positive") }
        if let packets {
            guard packets == "initiator" || packets == "responder" else { throw ValidationError("--packets is initiator or responder") }
            guard inject != (captureOn != nil) else { throw ValidationError("--packets needs one of --inject and --capture-on") }
            guard to == nil, respond == nil else { throw ValidationError("--packets (TUN mode) replaces --to and --respond") }
            guard let rewrite else { throw ValidationError("--packets needs --rewrite INITIATOR=ADDR,RESPONDER=ADDR") }
            _ = try Self.rewriteAddresses(rewrite)
            guard (0..<255).contains(hops) else { throw ValidationError("--hops must be 0 to 254") }
            guard (68...65_535).contains(mtu) else { throw ValidationError("--mtu must be 68 to 65535") }
            if injectOn != nil && !inject { throw ValidationError("--inject-on goes with --inject") }
        } else if inject || captureOn != nil || rewrite != nil || injectOn != nil {
            throw ValidationError("--inject, --inject-on, --capture-on and --rewrite belong to --packets (TUN mode)")
        }
    }

    /// "INITIATOR=10.0.0.1,RESPONDER=10.0.0.2" (either order, any case); both IPv4 or both IPv6.
    static func rewriteAddresses(_ text: String) throws -> (initiator: IPAddress, responder: IPAddress) {
        var found: [String: IPAddress] = [:]
        for part in text.split(separator: ",") {
            let pair = part.split(separator: "=", maxSplits: 1)
            guard pair.count == 2, let address = IPAddress(pair[1].trimmingCharacters(in: .whitespaces)) else {
                throw ValidationError("--rewrite: '\(part)' is not ROLE=ADDRESS")
            }
            found[pair[0].trimmingCharacters(in: .whitespaces).lowercased()] = address
        }
        guard let i = found["initiator"], let r = found["responder"], found.count == 2 else {
            throw ValidationError("--rewrite must be INITIATOR=ADDR,RESPONDER=ADDR")
        }
        guard i.isIPv6 == r.isIPv6 else {
            throw ValidationError("--rewrite: the initiator and the responder need addresses of one family (both IPv4 or both IPv6)")
        }
        guard i != r else { throw ValidationError("--rewrite: the initiator and the responder need two addresses") }
        return (i, r)
    }

    func run() async throws {
        if let packets { return try replayPackets(packets == "initiator" ? .fromInitiator : .fromResponder) }
        let summary: CaptureSummary
        do {
            summary = try PcapFileReader.flows(path: capture)
        } catch {
            Self.stderr("postern replay: \(error)")
            throw ExitCode(2)
        }
        let mode: ReplayPacing.Mode = timing == "fast" ? .fast : .recorded(scale: scale)
        do {
            if let to {
                let target = try Self.address(to, "--to")
                let report = try await ReplayInitiator(
                    summary: summary, capture: capture, target: target,
                    datagramTarget: try udpTo.map { try Self.address($0, "--udp-to") } ?? target,
                    control: try control.map { try Self.address($0, "--control") } ?? Self.nextPort(target),
                    mode: mode, timeout: .seconds(Int64(timeout)), parallel: parallel,
                    progress: quiet ? nil : { Self.stderr($0) }
                ).run()
                try Self.printReport(report, json: json)
                if report.failed { throw ExitCode(1) }
            } else if let respond {
                let listen = try Self.address(respond, "--respond")
                let responder = ReplayResponder(
                    summary: summary, listen: listen,
                    control: try control.map { try Self.address($0, "--control") } ?? Self.nextPort(listen),
                    mode: mode, timeout: .seconds(Int64(timeout)), log: { Self.stderr($0) })
                try await responder.run()
            } else {
                list(summary)
            }
        } catch let e as ExitCode {
            throw e
        } catch let e as ValidationError {
            throw e
        } catch let failure as ReplayFailure {
            // Stopped midway (the tunnel went away): the flows it got through, then why it stopped.
            if let partial = failure.partial { try Self.printReport(partial, json: json) }
            Self.stderr("postern replay: \(failure)")
            throw ExitCode(2)
        } catch {
            Self.stderr("postern replay: \(error)")
            throw ExitCode(2)
        }
    }

    /// TUN mode: inject one side's packets, or capture and check them.
    private func replayPackets(_ direction: FlowDirection) throws {
        let records: [CaptureRecord]
        do {
            records = try PcapFileReader.readAll(path: capture)
        } catch {
            Self.stderr("postern replay: \(error)")
            throw ExitCode(2)
        }
        let addresses = try Self.rewriteAddresses(rewrite ?? "")
        let replay = PacketReplay(
            plan: PacketPlan(records: records, mtu: mtu, hops: hops, version: addresses.initiator.isIPv6 ? 6 : 4), capture: capture,
            direction: direction,
            initiator: addresses.initiator, responder: addresses.responder, hops: hops)
        if inject {
            // Nothing at all to inject is a replay that cannot run (as in stream mode): say why, exit 2.
            // It printed "sent 0 packets" and exited 0.
            guard !replay.planned.isEmpty else {
                Self.stderr("postern replay: sent 0 packets from the \(direction): \(replay.plan.nothingToSend(from: direction))")
                throw ExitCode(2)
            }
            do {
                let sent = try replay.inject(on: injectOn, gap: 0.002, recorded: timing == "recorded" ? scale : nil)
                if !quiet { Self.stderr("replay inject: sent \(sent) packets from the \(direction)") }
            } catch {
                Self.stderr("postern replay: \(error)")
                throw ExitCode(2)
            }
            return
        }
        let result: (report: ReplayReport, unexpected: Int)
        do {
            result = try replay.capture(interface: captureOn ?? "", timeout: Double(timeout), settle: 0.5) { Self.stderr($0) }
        } catch {
            Self.stderr("postern replay: \(error)")
            throw ExitCode(2)
        }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try encoder.encode(result.report), as: UTF8.self))
        } else {
            print(result.report.text)
            if result.unexpected > 0 { print("\(result.unexpected) packets arrived that were not sent") }
        }
        if result.report.failed || result.unexpected > 0 { throw ExitCode(1) }
    }

    /// Without a role: the flows the capture holds and what stream mode would do with each.
    private func list(_ summary: CaptureSummary) {
        let report = ReplayReport(
            capture: capture, mode: "list",
            flows: summary.flows.map { flow in
                let skip = ReplayReport.skipReason(flow)
                var report = FlowReport(flow: flow, status: skip == nil ? .ok : .skipped, reason: skip)
                report.directions = [FlowDirection.fromInitiator, .fromResponder].map { d in
                    DirectionCheck(
                        direction: d, expectedPackets: flow.packets(from: d), deliveredPackets: 0, expectedBytes: flow.bytes(from: d).count,
                        receivedBytes: 0, firstDifference: nil, expectedEnding: "", observedEnding: "")
                }
                return report
            })
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: (try? encoder.encode(report)) ?? Data(), as: UTF8.self))
            return
        }
        for flow in summary.flows {
            var line = "flow \(flow.number) \(flow.label)"
            if flow.transport == .icmp { line += " \(flow.summary)" }
            line += ": \(flow.packets(from: .fromInitiator))+\(flow.packets(from: .fromResponder)) packets, "
            line += "\(flow.bytes(from: .fromInitiator).count)+\(flow.bytes(from: .fromResponder).count) bytes"
            if flow.transport == .tcp { line += ", \(flow.ending)" }
            if flow.retransmissions + flow.outOfOrder > 0 {
                line += ", \(flow.retransmissions) retransmitted, \(flow.outOfOrder) out of order"
            }
            line += ReplayReport.skipReason(flow).map { " -- skipped: \($0)" } ?? " -- replayable"
            print(line)
        }
        var tail = "\(capture): \(summary.packets) packets, \(summary.flows.count) flows"
        if summary.notIP > 0 { tail += ", \(summary.notIP) not IP" }
        if summary.otherTransport > 0 { tail += ", \(summary.otherTransport) other transports" }
        if summary.undecodableCount > 0 { tail += ", \(summary.undecodableCount) undecodable" }
        print(tail)
        for note in summary.undecodable { print("  \(note)") }
    }

    static func address(_ text: String, _ option: String) throws -> SocketAddress {
        guard let endpoint = Endpoint(parsing: text) else { throw ValidationError("\(option) must be HOST:PORT, not '\(text)'") }
        do {
            return try SocketAddress.makeAddressResolvingHost(
                "\(endpoint.host)".trimmingCharacters(in: CharacterSet(charactersIn: "[]")), port: Int(endpoint.port))
        } catch let error as SocketAddressError.UnknownHost {
            // Not a usage error: the name is well formed and does not resolve (here, now). In words,
            // not as `SocketAddressError.UnknownHost: Name or service not known (error -2) for ...`.
            throw ReplayFailure(reason: "\(option) \(text): cannot resolve '\(error.host)': \(error.errorDescription)")
        } catch {
            throw ReplayFailure(reason: "\(option) \(text): \(error)")
        }
    }

    static func nextPort(_ address: SocketAddress) throws -> SocketAddress {
        guard let port = address.port, port < 65_535, let ip = address.ipAddress else {
            throw ValidationError("give --control: no port follows \(address)")
        }
        return try SocketAddress(ipAddress: ip, port: port + 1)
    }

    /// A replay's report on standard output: its text, or (`--json`) the report as JSON.
    static func printReport(_ report: ReplayReport, json: Bool) throws {
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try encoder.encode(report), as: UTF8.self))
        } else {
            print(report.text)
        }
    }

    static func stderr(_ line: String) {
        FileHandle.standardError.write(Data((line + "\n").utf8))
    }
}
