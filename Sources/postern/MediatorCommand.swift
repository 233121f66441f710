import ArgumentParser
import Logging
import PosternCore
import PosternMediator
import PosternTunnel
import PosternWire

struct MediatorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mediator",
        abstract: "Run the mediator inside the private network: dial the server and serve its requests."
    )

    @Option(help: "The server's service port, HOST:PORT.")
    var server: String?

    @Option(help: "This mediator's name, as forwards and ctl refer to it.")
    var name: String?

    @Option(help: "File holding this mediator's secret.")
    var secretFile: String?

    @Option(
        help:
            "Destinations CONNECT may reach: CIDR[:PORTS], e.g. 192.168.77.0/24:80,443 (repeatable; none = any). This host's loopback and link-local addresses need a rule inside their range, e.g. 127.0.0.1:22."
    )
    var allow: [String] = []

    @Flag(
        help:
            "Let the server expose this network's ports: LISTEN, and unsolicited datagrams on opened UDP ports (reverse forwards). Off by default."
    )
    var allowListen = false

    @Flag(help: "Let the server REDIRECT LAN datagrams to a UDP channel (also admits unsolicited datagrams). Off by default.")
    var allowRedirect = false

    @Flag(help: "Plain TCP to the server, no TLS: relayed data is not encrypted. The server must run --insecure too.")
    var insecure = false

    @Option(help: "The server's TLS key fingerprint (sha256:HEX, as 'postern server' prints it): trust only this key.")
    var serverFingerprint: String?

    @Option(help: "Trust-on-first-use record of server keys (default STATE_DIR/known_servers); a changed key is refused.")
    var knownServers: String?

    @Option(help: "Trust a server certificate issued by this CA (PEM) that names the --server host, instead of pinning.")
    var caFile: String?

    @Option(help: "TLS client certificate (PEM) for servers that require one (--mediator-ca there).")
    var tlsCert: String?

    @Option(help: "Private key (PEM) for --tls-cert.")
    var tlsKey: String?

    @Option(help: "Directory for the known-servers file (default $POSTERN_STATE_DIR, /var/lib/postern as root).")
    var stateDir: String?

    @Option(help: "Ports the server may make this mediator hold at once (default 4096).")
    var maxPorts: Int?

    @Option(help: "Connects in progress at once (default 256).")
    var maxPendingConnects: Int?

    @Option(help: "OPEN/CONNECT/LISTEN/REDIRECT requests a second the server may make (default 5000).")
    var maxRequestRate: Int?

    @Option(
        help:
            "Seconds between keepalives on each UDP channel (default 15; the channel is down after 3 silent intervals, or 3 s after an unanswered one with the peer silent); 0 turns UDP channels off."
    )
    var udpKeepalive: Double?

    @Option(help: "MiB received from the server but not yet written to LAN sockets, all ports together (default 256).")
    var maxSessionBuffer: Int?

    @Option(
        help:
            "TUN mode: the remote side's address on the LAN with the LAN's prefix length, e.g. 192.168.77.50/24 (an unused address). The server may then relay IP packets between it and the LAN prefix. Give it twice for IPv4 and IPv6 (--tun 192.168.77.50/24 --tun fd00:77::50/64; at most one per family; IPv6 alone works too). Off by default; needs CAP_NET_ADMIN."
    )
    var tun: [String] = []

    @Option(help: "More LAN prefixes TUN mode may reach, e.g. 10.77.0.0/16 or fd00:78::/64 (repeatable).")
    var tunAllow: [String] = []

    @Option(
        help:
            "TUN mode's presence on the LAN: proxy (default: a tun device, a proxy neighbour entry and forwarding sysctls; needs CAP_NET_ADMIN) or raw (the mediator answers ARP and NDP and sends the frames itself through a packet socket; the host's routing and sysctls stay untouched; needs CAP_NET_RAW)."
    )
    var lanPresence: String?

    @Option(help: TunOffloadOption.help)
    var tunOffload: String?

    @Flag(
        help:
            "Do not take pipelined CONNECTs (server-chosen port ids, the user's bytes before DONE): the server then connects as with a mediator that predates them. For comparison and troubleshooting."
    )
    var noPipelinedConnect = false

    @Option(help: "TOML configuration file with a [mediator] table.")
    var config: String?

    @OptionGroup var pcapOptions: PcapOptions

    @OptionGroup var log: LogOptions

    func run() async throws {
        let logger = try log.makeLogger("postern.mediator")
        let configuration: MediatorConfiguration
        do {
            configuration = try makeConfiguration(logger: logger)
        } catch {
            logger.error("\(error)")
            throw ExitCode(2)
        }
        let service = MediatorService(configuration: configuration, logger: logger)
        HeapTrimmer.start(logger: logger)
        Signals.onTermination {
            SystemdNotify.send("STOPPING=1")
            service.stop()
        }
        // SIGHUP reloads the server; sent to a mediator (by habit, or a closed terminal) it killed it
        // at once, its LAN gone from the server until someone noticed. It has nothing to reload.
        Signals.onHangup {
            logger.notice("SIGHUP: the mediator reads its configuration only at start (restart it to apply a change); running on")
        }
        // The mediator is running (it dials, and redials, by itself): ready for systemd's Type=notify.
        SystemdNotify.send("READY=1")
        do {
            try await service.run()
        } catch {
            logger.error("\(error)")
            throw ExitCode(1)
        }
    }

    /// The keys of the config file's `[mediator]` section (README, "Configuration file": a unit test
    /// checks that table against this set both ways).
    static let configKeys = Set([
        "server", "name", "secret-file", "allow", "allow-listen", "allow-redirect", "max-ports", "max-pending-connects",
        "max-request-rate", "max-session-buffer", "udp-keepalive",
        "insecure", "server-fingerprint", "known-servers", "ca-file", "tls-cert", "tls-key", "state-dir",
        "tun", "tun-allow", "lan-presence",
        "tun-offload",
    ]).union(PcapOptions.configKeys)

    /// An IPv4 prefix's broadcast address (every host bit set): LAN hosts send to it as broadcast, so
    /// TUN mode's proxy ARP entry and route for it would take the LAN's broadcasts (`--tun
    /// 192.168.77.255/24` was taken). IPv6 has no broadcast address.
    static func isBroadcast(_ prefix: MediatorEnvironment.AddressPrefix) -> Bool {
        guard !prefix.address.isIPv6 else { return false }
        let bytes = prefix.address.bytes
        guard bytes.count == 4, prefix.prefixLength < 31 else { return false }
        for bit in Int(prefix.prefixLength)..<32 where bytes[bit / 8] & (0x80 >> UInt8(bit % 8)) == 0 { return false }
        return true
    }

    func makeConfiguration(logger: Logger) throws -> MediatorConfiguration {
        let section = try config.map { try ConfigFile(path: $0) }?.section(
            "mediator",
            allowed: Self.configKeys)
        guard let serverText = try server ?? section?.string("server") else {
            throw ValidationError("--server HOST:PORT is required (or server in the config file)")
        }
        guard let endpoint = Endpoint(parsing: serverText) else {
            throw ValidationError("--server '\(serverText)' is not HOST:PORT (IPv6 in brackets)")
        }
        guard let name = try name ?? section?.string("name") else {
            throw ValidationError("--name NAME is required (or name in the config file)")
        }
        guard MediatorName.isValid(name) else {
            throw ValidationError("--name '\(name)': use 1-64 letters, digits, '-', '_' or '.'")
        }
        let secretText = try SecretSource.resolve(file: try secretFile ?? section?.string("secret-file"), logger: logger)
        let secret = try SecretSource.single(secretText.text, source: secretText.source)
        let rules = (try section?.strings("allow") ?? []) + allow
        let policy = Policy(
            allow: try rules.map { try AllowRule(parsing: $0) },
            listenEnabled: try allowListen || (section?.bool("allow-listen") ?? false),
            redirectEnabled: try allowRedirect || (section?.bool("allow-redirect") ?? false))
        let host: String
        switch endpoint.host {
        case .ip(let a): host = a.description
        case .name(let n): host = n
        }
        var configuration = MediatorConfiguration(
            serverHost: host, serverPort: Int(endpoint.port), name: name, secret: secret, policy: policy,
            transport: try MediatorTransportOptions(
                insecure: try insecure || (section?.bool("insecure") ?? false),
                serverFingerprint: try serverFingerprint ?? section?.string("server-fingerprint"),
                knownServersFile: try knownServers ?? section?.string("known-servers"),
                stateDirectory: try stateDir ?? section?.string("state-dir"),
                caFile: try caFile ?? section?.string("ca-file"),
                certificateFile: try tlsCert ?? section?.string("tls-cert"),
                keyFile: try tlsKey ?? section?.string("tls-key")
            ).make(logger: logger),
            softwareVersion: Postern.softwareVersion)
        if let n = try maxPorts ?? section?.int("max-ports") {
            guard (1...1_000_000).contains(n) else { throw ValidationError("--max-ports must be 1-1000000") }
            configuration.maxPorts = n
        }
        if let n = try maxPendingConnects ?? section?.int("max-pending-connects") {
            guard (1...100_000).contains(n) else { throw ValidationError("--max-pending-connects must be 1-100000") }
            configuration.maxPendingConnects = n
        }
        if let n = try maxRequestRate ?? section?.int("max-request-rate") {
            guard (1...1_000_000).contains(n) else { throw ValidationError("--max-request-rate must be 1-1000000") }
            configuration.maxRequestRate = n
        }
        try Timing.applyUDP(
            keepalive: try udpKeepalive ?? section?.seconds("udp-keepalive"), to: &configuration.udpChannel,
            enabled: &configuration.udpChannelEnabled)
        try SessionBuffer.apply(try maxSessionBuffer ?? section?.int("max-session-buffer"), to: &configuration.settings)
        configuration.pcap = try pcapOptions.settings(section)
        if noPipelinedConnect { configuration.pipelinedConnects = false }
        // The config file's `tun` is a string (one address) or an array of them (one per family).
        let tunTexts = try !tun.isEmpty ? tun : (section?.stringOrStrings("tun") ?? [])
        if !tunTexts.isEmpty {
            typealias Prefix = MediatorEnvironment.AddressPrefix
            var addresses: [Prefix] = []
            for text in tunTexts {
                guard text.contains("/"), let address = Prefix(parsing: text),
                    address.prefixLength < (address.address.isIPv6 ? 127 : 31)
                else {
                    throw ValidationError(
                        "--tun '\(text)': give an IPv4 or IPv6 ADDRESS/PREFIX on the LAN, e.g. 192.168.77.50/24 or fd00:77::50/64")
                }
                guard address.address != address.network.address else {
                    throw ValidationError("--tun '\(text)' is the LAN's network address, not a host address")
                }
                guard !Self.isBroadcast(address) else {
                    throw ValidationError("--tun '\(text)' is the LAN's broadcast address, not a host address")
                }
                guard !addresses.contains(where: { $0.address.isIPv6 == address.address.isIPv6 }) else {
                    throw ValidationError("--tun '\(text)': at most one --tun per address family")
                }
                addresses.append(address)
            }
            let extra = try ((try section?.strings("tun-allow") ?? []) + tunAllow).map { item -> Prefix in
                guard let p = Prefix(parsing: item) else {
                    throw ValidationError("--tun-allow '\(item)': give an IPv4 or IPv6 prefix, e.g. 10.77.0.0/16")
                }
                guard !p.address.isIPv6 || addresses.contains(where: \.address.isIPv6) else {
                    throw ValidationError("--tun-allow '\(item)': an IPv6 prefix needs an IPv6 --tun address")
                }
                return p
            }
            guard extra.count + addresses.count <= Frame.TunReady.maxPrefixes else {
                throw ValidationError("--tun-allow: at most \(Frame.TunReady.maxPrefixes - addresses.count) prefixes")
            }
            configuration.tun = MediatorTunSettings(
                addresses: addresses, extraPrefixes: extra,
                stateDirectory: StateDirectory.resolve(try stateDir ?? section?.string("state-dir")))
            if let text = try lanPresence ?? section?.string("lan-presence") {
                guard let mode = LANPresenceMode(rawValue: text) else {
                    throw ValidationError("--lan-presence '\(text)': give proxy or raw")
                }
                configuration.tun?.lanPresence = mode
            }
            if let on = try TunOffloadOption.parse(try tunOffload ?? section?.string("tun-offload")) { configuration.tun?.offload = on }
        } else if let text = try lanPresence ?? section?.string("lan-presence") {
            throw ValidationError("--lan-presence \(text) needs --tun ADDRESS/PREFIX")
        } else if let text = try tunOffload ?? section?.string("tun-offload") {
            throw ValidationError("--tun-offload \(text) needs --tun ADDRESS/PREFIX")
        }
        return configuration
    }
}
