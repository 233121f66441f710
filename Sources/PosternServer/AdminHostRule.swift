import PosternWire

/// Which `Host` header values the admin API answers. A web page can make a browser on the server
/// host send requests to 127.0.0.1 by rebinding its own name there (DNS rebinding); such requests
/// still carry the page's name in `Host`. So only the names the API is really reached by pass:
/// `localhost`, 127.0.0.1, ::1 and the address it listens on or was reached at, each with its port.
public struct AdminHostRule: Sendable {
    public let port: UInt16
    private let addresses: Set<IPAddress>

    /// `addresses`: where the API listens and where this connection reached it (an IPv4 peer on
    /// a dual-stack socket arrives as ::ffff:a.b.c.d; both forms are accepted).
    public init(port: UInt16, addresses: [IPAddress]) {
        self.port = port
        var all: Set<IPAddress> = [.v4(0x7f00_0001), .v6([UInt8](repeating: 0, count: 15) + [1])]
        for a in addresses where !a.isUnspecified {
            all.insert(a)
            if let v4 = Self.unmapped(a) { all.insert(v4) }
        }
        self.addresses = all
    }

    public func allows(_ host: String?) -> Bool {
        guard let host, let (name, port) = Self.split(host), port == self.port else { return false }
        if name.lowercased() == "localhost" { return true }
        guard let address = IPAddress(name) else { return false }
        return addresses.contains(address) || Self.unmapped(address).map(addresses.contains) == true
    }

    /// `NAME[:PORT]` or `[V6][:PORT]`; no port means HTTP's default, 80.
    static func split(_ host: String) -> (Substring, UInt16)? {
        var rest = Substring(host)
        let name: Substring
        if rest.hasPrefix("[") {
            guard let close = rest.firstIndex(of: "]") else { return nil }
            name = rest[rest.index(after: rest.startIndex)..<close]
            rest = rest[rest.index(after: close)...]
        } else if let colon = rest.firstIndex(of: ":") {
            name = rest[..<colon]
            rest = rest[colon...]
        } else {
            name = rest
            rest = ""
        }
        if rest.isEmpty { return name.isEmpty ? nil : (name, 80) }
        guard rest.first == ":", let port = UInt16(rest.dropFirst()), !name.isEmpty else { return nil }
        return (name, port)
    }

    private static func unmapped(_ a: IPAddress) -> IPAddress? {
        guard case .v6(let b) = a, b[0..<10].allSatisfy({ $0 == 0 }), b[10] == 0xff, b[11] == 0xff else { return nil }
        return .v4(UInt32(b[12]) << 24 | UInt32(b[13]) << 16 | UInt32(b[14]) << 8 | UInt32(b[15]))
    }
}
