import ArgumentParser
import Foundation
import Logging
import NIOCore
import PosternCore
import PosternSOCKS
import PosternServer
import PosternTLS
import PosternTunnel
import PosternWire

struct ServerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "server",
        abstract: "Run the public server: the service port mediators dial, forwards and the admin API."
    )

    @Option(help: "Service port address, ADDR:PORT (IPv6 in brackets).")
    var listen: String?

    @Option(help: "File with the mediators' secret: one line shared by all, or 'NAME SECRET' lines.")
    var secretFile: String?

    @Option(help: "Admin HTTP API address (default 127.0.0.1:7070; 'off' disables it).")
    var admin: String?

    @Option(
        help:
            "File holding the admin API's bearer token (or $POSTERN_ADMIN_TOKEN); required when --admin is not a loopback address. Default: STATE_DIR/admin.token, made on first start."
    )
    var adminTokenFile: String?

    @Flag(help: "Allow --admin on a non-loopback address although it is plain HTTP: the token and all answers cross the network readable.")
    var adminInsecurePlain = false

    @Flag(
        help:
            "Serve the admin API over HTTPS (TLS 1.3) with the server's own TLS key and certificate (--tls-cert/--tls-key, or the generated one); ctl verifies it with --admin-pin or --admin-ca. Not with --insecure."
    )
    var adminTls = false

    @Option(
        help: ArgumentHelp(
            "Also serve GET /metrics (Prometheus) here without the admin token; PORT alone means 127.0.0.1:PORT. It is on the admin API, with the token, either way.",
            valueName: "[addr:]port"))
    var metrics: String?

    @Option(help: "A forward, e.g. tcp:0.0.0.0:8080=acme/192.168.77.10:80 (repeatable).")
    var forward: [String] = []

    @Option(help: "TOML configuration file with a [server] table.")
    var config: String?

    @Option(help: "Seconds between keepalives on each tunnel (default 10).")
    var keepalive: Double?

    @Option(help: "Seconds of silence after which a tunnel is declared dead (default 30).")
    var deadTimeout: Double?

    @Option(help: "Mediators connected at once (default 1024); one session per name.")
    var maxMediators: Int?

    @Option(
        help:
            "Event loops (threads), 1-64 (default: one per core): mediator sessions are spread over them; 1 runs everything on one thread."
    )
    var threads: Int?

    @Option(
        help:
            "Seconds a connected mediator has to answer a keepalive when another session claims its name (default 3): answered, the newcomer is refused; silent, it is replaced."
    )
    var nameProbeTimeout: Double?

    @Option(
        help:
            "CONNECTs the server sends one mediator at once (default 256, the mediator's --max-pending-connects); more wait in a queue, and forwards stop accepting meanwhile."
    )
    var mediatorConnects: Int?

    @Option(help: "Seconds a connection may wait for a CONNECT slot at its mediator before it is reset (default 30).")
    var connectQueueTimeout: Double?

    @Option(help: "MiB received from a mediator but not yet written to local sockets, per session (default 256).")
    var maxSessionBuffer: Int?

    @Option(
        help:
            "Seconds between keepalives on each UDP channel (default 15; the channel is down after 3 silent intervals, or 3 s after an unanswered one with the peer silent); 0 turns UDP channels off."
    )
    var udpKeepalive: Double?

    @Option(help: "UDP flows (peers) each udp: forward holds at once (default 256); new peers past it are dropped.")
    var udpMaxFlows: Int?

    @Flag(help: "Plain TCP on the service port, no TLS: relayed data is not encrypted. For tests and trusted links only.")
    var insecure = false

    @Option(help: "TLS certificate chain (PEM, leaf first), e.g. from a CA. Default: a self-signed one made in the state directory.")
    var tlsCert: String?

    @Option(help: "TLS private key (PEM) for --tls-cert; must not be readable by other users.")
    var tlsKey: String?

    @Option(help: "Directory for the generated TLS key and certificate (default $POSTERN_STATE_DIR, /var/lib/postern as root).")
    var stateDir: String?

    @Flag(
        help:
            "TUN mode: a tun device per mediator that offers it (mediator --tun), routing its LAN prefixes. Off by default; needs CAP_NET_ADMIN."
    )
    var tun = false

    @Option(help: "MTU of TUN mode's devices (576-9000, default 1400); the mediator may lower it.")
    var tunMtu: Int?

    @Option(help: TunOffloadOption.help)
    var tunOffload: String?

    @Option(help: "Require mediators to present a TLS certificate issued by this CA (PEM): mutual TLS.")
    var mediatorCa: String?

    @Option(help: "A SOCKS5 listener whose requests mediator NAME carries out, ADDR:PORT=NAME (repeatable).")
    var socks: [String] = []

    @Option(help: "File of SOCKS5 accounts, 'USER PASSWORD [MEDIATORS]' lines (mode 600): username/password required.")
    var socksUsers: String?

    @Flag(help: "Allow SOCKS5 without authentication on a non-loopback --socks address: anyone who reaches it uses the mediator's network.")
    var socksNoAuth = false
    @OptionGroup var pcapOptions: PcapOptions

    @OptionGroup var log: LogOptions

    /// Bad flag values that need no file read are refused as usage errors (exit 64); the same values
    /// from the config file are refused with the rest of the configuration.
    func validate() throws {
        if let n = threads, !(1...ServerConfiguration.maxThreads).contains(n) {
            throw ValidationError("--threads must be 1-\(ServerConfiguration.maxThreads) (one event loop per thread), not \(n)")
        }
    }

    func run() async throws {
        let logger = try log.makeLogger("postern.server")
        let configuration: ServerConfiguration
        do {
            configuration = try makeConfiguration(logger: logger)
        } catch {
            logger.error("\(error)")
            throw ExitCode(2)
        }
        if let tls = configuration.transport as? TLSServerTransport {
            // On stdout, for whoever sets up mediators: this is what they pin.
            print("TLS key fingerprint: \(tls.identity.fingerprint)  (mediators pin it with --server-fingerprint)")
            fflush(stdout)
        }
        let service = ServerService(configuration: configuration, logger: logger)
        HeapTrimmer.start(logger: logger)
        // A reload reads the whole configuration again (a broken file is refused whole) and applies
        // its forwards and SOCKS5 listeners (and the SOCKS accounts); the other settings need a restart.
        service.wantedConfiguration = { try makeConfiguration(logger: logger) }
        do {
            try await service.start()
        } catch {
            logger.error("\(error)")
            service.stop()
            try? await service.run()
            throw ExitCode(1)
        }
        Signals.onTermination {
            SystemdNotify.send("STOPPING=1")
            service.stop()
        }
        Signals.onHangup {
            logger.info("SIGHUP: reloading the configuration")
            SystemdNotify.send("RELOADING=1")
            // Ready again whatever the outcome: a refused reload leaves the old forwards serving.
            service.reload().whenComplete { _ in SystemdNotify.send("READY=1") }  // the refusal is logged by reload
        }
        // Everything is bound: systemd (Type=notify) may start what depends on the server.
        SystemdNotify.send("READY=1")
        try await service.run()
    }

    /// The keys of the config file's `[server]` section (README, "Configuration file": a unit test
    /// checks that table against this set both ways).
    static let configKeys = Set([
        "listen", "secret-file", "admin", "admin-token-file", "admin-insecure-plain", "admin-tls", "forwards", "keepalive",
        "dead-timeout", "max-mediators", "max-session-buffer", "udp-max-flows", "udp-keepalive", "name-probe-timeout",
        "insecure", "tls-cert", "tls-key", "state-dir", "mediator-ca", "socks", "socks-users", "socks-no-auth",
        "tun", "tun-mtu", "metrics",
        "mediator-connects", "connect-queue-timeout",
        "tun-offload",
        "threads",
    ]).union(PcapOptions.configKeys)

    func makeConfiguration(logger: Logger) throws -> ServerConfiguration {
        let section = try config.map { try ConfigFile(path: $0) }?.section(
            "server",
            allowed: Self.configKeys)
        guard let listenText = try listen ?? section?.string("listen") else {
            throw ValidationError("--listen ADDR:PORT is required (or listen in the config file)")
        }
        guard let listenEndpoint = Endpoint(parsing: listenText), let listenAddress = ListenAddress(listenEndpoint) else {
            throw ValidationError("--listen '\(listenText)' is not ADDR:PORT (IPv6 in brackets)")
        }
        let secretText = try SecretSource.resolve(file: try secretFile ?? section?.string("secret-file"), logger: logger)
        let secrets = try SecretBook.parse(secretText.text, source: secretText.source)
        var adminEndpoint: ListenAddress? = ListenAddress(.v4(0x7f00_0001), 7070)
        if let adminText = try admin ?? section?.string("admin") {
            if adminText == "off" {
                adminEndpoint = nil
            } else {
                guard let e = Endpoint(parsing: adminText).flatMap(ListenAddress.init) else {
                    throw ValidationError("--admin '\(adminText)' is not ADDR:PORT")
                }
                adminEndpoint = e
            }
        }
        let adminTLS = try adminTls || (section?.bool("admin-tls") ?? false)
        var adminToken: [UInt8]? = nil
        if let file = try adminTokenFile ?? section?.string("admin-token-file") {
            let token = try SecretSource.firstLine(try SecretSource.read(file, logger: logger), source: file)
            if let refusal = SecretLength.tokenRefusal(String(decoding: token, as: UTF8.self), in: file) {
                throw ValidationError(refusal)
            }
            adminToken = token
        } else if let env = ProcessInfo.processInfo.environment["POSTERN_ADMIN_TOKEN"], !env.isEmpty {
            if let refusal = SecretLength.tokenRefusal(env, in: "$POSTERN_ADMIN_TOKEN") { throw ValidationError(refusal) }
            adminToken = Array(env.utf8)
        }
        if let admin = adminEndpoint, !admin.address.isLoopback {
            guard adminToken != nil else {
                throw ValidationError(
                    "the admin API on \(admin) would be reachable from the network: give --admin-token-file (or POSTERN_ADMIN_TOKEN), or bind it to 127.0.0.1"
                )
            }
            guard try adminTLS || adminInsecurePlain || (section?.bool("admin-insecure-plain") ?? false) else {
                throw ValidationError(
                    "the admin API on \(admin) would be plain HTTP on the network, token included: bind it to 127.0.0.1 (and reach it through ssh), serve it over HTTPS with --admin-tls, or accept that with --admin-insecure-plain"
                )
            }
        }
        if adminEndpoint != nil, adminToken == nil {
            // Every request needs a credential, also on loopback: without a configured token the
            // server keeps one in its state directory, where only root and its own user can read it.
            let directory = StateDirectory.resolve(try stateDir ?? section?.string("state-dir"))
            let (token, created) = try AdminTokenFile.loadOrCreate(directory: directory)
            adminToken = token
            logger.info("admin API token \(created ? "created in" : "read from") \(AdminTokenFile.path(in: directory))")
        }
        let specs = (try section?.strings("forwards") ?? []) + forward
        let forwards = try specs.map { try ForwardSpec(parsing: $0) }
        var settings = SessionSettings()
        try Timing.apply(
            keepalive: try keepalive ?? section?.seconds("keepalive"),
            deadTimeout: try deadTimeout ?? section?.seconds("dead-timeout"), to: &settings)
        try SessionBuffer.apply(try maxSessionBuffer ?? section?.int("max-session-buffer"), to: &settings)
        var configuration = ServerConfiguration(
            listen: listenAddress, secrets: secrets, admin: adminEndpoint, forwards: forwards, settings: settings,
            transport: try ServerTransportOptions(
                insecure: insecure || (section?.bool("insecure") ?? false),
                certificateFile: try tlsCert ?? section?.string("tls-cert"),
                keyFile: try tlsKey ?? section?.string("tls-key"),
                stateDirectory: try stateDir ?? section?.string("state-dir"),
                mediatorCAFile: try mediatorCa ?? section?.string("mediator-ca")
            ).make(logger: logger),
            softwareVersion: Postern.softwareVersion)
        configuration.adminToken = adminToken
        if adminTLS, adminEndpoint != nil {
            // The tunnel's key, without --mediator-ca's demand for a client certificate (ctl has none).
            guard let tunnel = configuration.transport as? TLSServerTransport else {
                throw ValidationError("--admin-tls serves the admin API with the server's TLS key, and --insecure turns TLS off")
            }
            configuration.adminTransport = try TLSServerTransport(identity: tunnel.identity)
            logger.info("admin API over HTTPS; its key is the tunnel's: \(tunnel.identity.fingerprint) (ctl --admin-pin)")
        }
        if let text = try metrics ?? section?.string("metrics") {
            configuration.metrics = try Self.metricsAddress(text)
            if let m = configuration.metrics, !m.address.isLoopback {
                logger.warning("--metrics \(m): the metrics are readable from the network without a token (names, addresses, traffic)")
            }
        }
        if let n = try maxMediators ?? section?.int("max-mediators") {
            guard (1...1_000_000).contains(n) else { throw ValidationError("--max-mediators must be 1-1000000") }
            configuration.maxMediators = n
        }
        if let n = try threads ?? section?.int("threads") {
            guard (1...ServerConfiguration.maxThreads).contains(n) else {
                throw ValidationError("--threads must be 1-\(ServerConfiguration.maxThreads) (one event loop per thread)")
            }
            configuration.threads = n
        }
        if let n = try udpMaxFlows ?? section?.int("udp-max-flows") {
            guard (1...65536).contains(n) else { throw ValidationError("--udp-max-flows must be 1-65536") }
            configuration.udpMaxFlows = n
        }
        try Timing.applyUDP(
            keepalive: try udpKeepalive ?? section?.seconds("udp-keepalive"), to: &configuration.udpChannel,
            enabled: &configuration.udpChannelEnabled)
        if let t = try nameProbeTimeout ?? section?.seconds("name-probe-timeout") {
            guard t >= 0.1 && t <= 600 else { throw ValidationError("--name-probe-timeout must be between 0.1 and 600 seconds") }
            configuration.nameProbeTimeout = .nanoseconds(Int64(t * 1e9))
        }
        try applySOCKS(section, to: &configuration, logger: logger)
        if let n = try mediatorConnects ?? section?.int("mediator-connects") {
            guard (1...100_000).contains(n) else { throw ValidationError("--mediator-connects must be 1-100000") }
            configuration.connectAdmission.limit = n
        }
        if let t = try connectQueueTimeout ?? section?.seconds("connect-queue-timeout") {
            guard t >= 0.1 && t <= 3600 else { throw ValidationError("--connect-queue-timeout must be between 0.1 and 3600 seconds") }
            configuration.connectAdmission.queueTimeout = .nanoseconds(Int64(t * 1e9))
        }
        configuration.pcap = try pcapOptions.settings(section)
        configuration.tunEnabled = try tun || (section?.bool("tun") ?? false)
        if let n = try tunMtu ?? section?.int("tun-mtu") {
            guard (576...9000).contains(n) else { throw ValidationError("--tun-mtu must be 576-9000") }
            configuration.tunMTU = n
        }
        configuration.tunStateDirectory = StateDirectory.resolve(try stateDir ?? section?.string("state-dir"))
        if let on = try TunOffloadOption.parse(try tunOffload ?? section?.string("tun-offload")) { configuration.tunOffload = on }
        return configuration
    }

    /// `--metrics`: ADDR:PORT, or PORT alone on the loopback address.
    static func metricsAddress(_ text: String) throws -> ListenAddress {
        if let port = UInt16(text) { return ListenAddress(.v4(0x7f00_0001), port) }
        guard let e = Endpoint(parsing: text).flatMap(ListenAddress.init) else {
            throw ValidationError("--metrics '\(text)' is not [ADDR:]PORT (IPv6 in brackets)")
        }
        return e
    }

    /// `--socks` listeners and their accounts. Without `--socks-users` a listener takes anyone who
    /// reaches it, so that is allowed on loopback only, unless `--socks-no-auth` says otherwise.
    private func applySOCKS(_ section: ConfigFile.Section?, to configuration: inout ServerConfiguration, logger: Logger) throws {
        let texts = (try section?.strings("socks") ?? []) + socks
        for text in texts {
            do {
                configuration.socks.append(try SOCKSListenerSpec(parsing: text))
            } catch {
                throw ValidationError(error.description)
            }
        }
        if let file = try socksUsers ?? section?.string("socks-users") {
            do {
                configuration.socksSettings.users = try SOCKSUsers(parsing: try SecretSource.read(file, logger: logger), source: file)
            } catch let e as SOCKSUsers.ParseError {
                throw ValidationError(e.description)
            }
        }
        configuration.socksNoAuth = try socksNoAuth || (section?.bool("socks-no-auth") ?? false)
        if configuration.socksSettings.users == nil && !configuration.socksNoAuth {
            for spec in configuration.socks where !spec.listen.address.isLoopback {
                throw ValidationError(
                    "--socks \(spec.listen) without --socks-users would let anyone who reaches it into mediator '\(spec.mediator)''s network: give --socks-users FILE, bind it to 127.0.0.1, or accept that with --socks-no-auth"
                )
            }
        }
    }
}
