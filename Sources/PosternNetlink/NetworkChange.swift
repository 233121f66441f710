import PosternWire

/// One change TUN mode makes to the host's network configuration, recorded in an `UndoJournal`
/// before it is made so that it can be undone on exit, on a lost session, or by the next run after a
/// crash. Written to the state file as one line each (`line`, `init(line:)`).
public enum NetworkChange: Hashable, Sendable, CustomStringConvertible {
    public typealias Prefix = MediatorEnvironment.AddressPrefix

    /// A device we created (undo: delete it). A tun device also goes when its last descriptor
    /// closes; the record covers a device made persistent or still held by a hung process.
    case link(name: String)
    /// An address on an interface (undo: delete it).
    case address(interface: String, prefix: Prefix)
    /// A directly connected route in the main table (undo: delete it).
    case route(interface: String, destination: Prefix)
    /// A proxy neighbour entry (undo: delete it).
    case proxyNeighbour(interface: String, address: IPAddress)
    /// A value written under /proc/sys (undo: write `previous` back).
    case sysctl(path: String, previous: String)

    public var description: String { line }

    /// The state file's form: a keyword, then space-separated fields (names and paths hold no spaces).
    public var line: String {
        switch self {
        case .link(let name): return "link \(name)"
        case .address(let interface, let prefix): return "address \(interface) \(prefix)"
        case .route(let interface, let destination): return "route \(interface) \(destination)"
        case .proxyNeighbour(let interface, let address): return "proxy \(interface) \(address)"
        case .sysctl(let path, let previous): return "sysctl \(path) \(previous)"
        }
    }

    public init?(line: some StringProtocol) {
        let f = String(line).split(separator: " ", omittingEmptySubsequences: true)
        guard f.count == 2 || f.count == 3 else { return nil }
        guard f.dropFirst().allSatisfy({ Self.isSafeField($0) }) else { return nil }
        switch (f[0], f.count) {
        case ("link", 2):
            self = .link(name: String(f[1]))
        case ("address", 3):
            guard let p = Prefix(parsing: f[2]) else { return nil }
            self = .address(interface: String(f[1]), prefix: p)
        case ("route", 3):
            guard let p = Prefix(parsing: f[2]) else { return nil }
            self = .route(interface: String(f[1]), destination: p)
        case ("proxy", 3):
            guard let a = IPAddress(f[2]) else { return nil }
            self = .proxyNeighbour(interface: String(f[1]), address: a)
        case ("sysctl", 3):
            // Only the sysctls TUN mode touches: a forged state file must not make us write elsewhere.
            guard f[1].hasPrefix("/proc/sys/net/"), !f[1].contains("..") else { return nil }
            self = .sysctl(path: String(f[1]), previous: String(f[2]))
        default:
            return nil
        }
    }

    /// Interface names, paths and values: printable ASCII without spaces.
    private static func isSafeField(_ s: Substring) -> Bool {
        !s.isEmpty && s.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7f }
    }
}
