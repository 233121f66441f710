/// What a mediator tells the server about the network it sits in (docs/protocol.md, ENVIRONMENT).
/// Read on the mediator through netlink; shown to users by `postern ctl mediators`.
public struct MediatorEnvironment: Hashable, Sendable {
    public var hostname: String
    public var softwareVersion: String
    public var capabilities: Capabilities
    public var interfaces: [Interface]
    /// Default routes (destination prefix length 0), IPv4 and IPv6.
    public var routes: [Route]

    public init(
        hostname: String, softwareVersion: String, capabilities: Capabilities = [],
        interfaces: [Interface] = [], routes: [Route] = []
    ) {
        self.hostname = hostname
        self.softwareVersion = softwareVersion
        self.capabilities = capabilities
        self.interfaces = interfaces
        self.routes = routes
    }

    public struct Capabilities: OptionSet, Hashable, Sendable {
        public let rawValue: UInt32
        public init(rawValue: UInt32) { self.rawValue = rawValue }
        /// /dev/net/tun can be opened (TUN mode possible).
        public static let tun = Capabilities(rawValue: 1 << 0)
        /// Raw sockets can be opened (CAP_NET_RAW).
        public static let rawSockets = Capabilities(rawValue: 1 << 1)
        /// The mediator's policy offers TUN mode (`--tun`): a server may send TUN (§10).
        public static let tunOffered = Capabilities(rawValue: 1 << 2)
        /// Unprivileged ICMP datagram sockets can be opened (`net.ipv4.ping_group_range` admits the
        /// mediator's group): ECHO works without CAP_NET_RAW.
        public static let icmpDatagram = Capabilities(rawValue: 1 << 3)
        /// The mediator runs with CAP_NET_ADMIN in its effective set (configuring a tun device needs it).
        public static let netAdmin = Capabilities(rawValue: 1 << 4)
        /// The mediator answers ECHO (§11): a server may send it. Set by every mediator that knows the
        /// frame, whether or not it can open an ICMP socket (it then answers FAILED saying what is missing).
        public static let echoOffered = Capabilities(rawValue: 1 << 5)
        /// The mediator understands TUN's flags byte (§10.1): a server may send the longer TUN, and
        /// then gets IPv6 in TUN_READY and TUN_STATS as its flags ask; and TUN_CLOSE (§10.7).
        public static let tunExtensions = Capabilities(rawValue: 1 << 6)
        /// The mediator resolves a name in ECHO's destination (§11.2) in its own network: a server may
        /// send one, with the family byte.
        public static let echoNames = Capabilities(rawValue: 1 << 7)
        /// The mediator takes server-chosen port ids in CONNECT (§5.3, "Pipelined CONNECT"): a server
        /// may name a new port with the top bit set and send its DATA, FINISHED or RESET right behind
        /// the CONNECT, before DONE.
        public static let pipelinedConnect = Capabilities(rawValue: 1 << 8)
        /// The mediator understands OPEN's flags byte (§5.1) and reports the datagrams its policy
        /// dropped with DENIED (§6.5) for a UDP port whose OPEN asked: a server may send that OPEN.
        public static let deniedReports = Capabilities(rawValue: 1 << 9)
    }

    public struct Interface: Hashable, Sendable {
        public var index: UInt32
        public var name: String
        /// Hardware address; empty for interfaces without one (loopback, tun).
        public var mac: [UInt8]
        public var mtu: UInt32
        public var isUp: Bool
        public var addresses: [AddressPrefix]

        public init(index: UInt32, name: String, mac: [UInt8], mtu: UInt32, isUp: Bool, addresses: [AddressPrefix]) {
            self.index = index
            self.name = name
            self.mac = mac
            self.mtu = mtu
            self.isUp = isUp
            self.addresses = addresses
        }

        public var macString: String {
            mac.map { String($0, radix: 16).leftPadded(to: 2) }.joined(separator: ":")
        }
    }

    public struct AddressPrefix: Hashable, Sendable, CustomStringConvertible {
        public var address: IPAddress
        public var prefixLength: UInt8
        public init(address: IPAddress, prefixLength: UInt8) {
            self.address = address
            self.prefixLength = prefixLength
        }
        public var description: String { "\(address)/\(prefixLength)" }
    }

    public struct Route: Hashable, Sendable {
        public var destination: AddressPrefix
        /// Next hop; nil for a directly connected route.
        public var gateway: IPAddress?
        public var interfaceIndex: UInt32
        public init(destination: AddressPrefix, gateway: IPAddress?, interfaceIndex: UInt32) {
            self.destination = destination
            self.gateway = gateway
            self.interfaceIndex = interfaceIndex
        }
    }
}

extension String {
    func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}
