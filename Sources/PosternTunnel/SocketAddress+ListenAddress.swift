import NIOCore
import PosternCore
import PosternWire

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

extension SocketAddress {
    /// A socket address from an IP address value. Cannot fail, unlike NIO's string forms: the
    /// address is already parsed.
    public init(_ address: IPAddress, port: UInt16) {
        switch address {
        case .v4(let v):
            var sin = sockaddr_in()
            sin.sin_family = sa_family_t(AF_INET)
            sin.sin_port = port.bigEndian
            sin.sin_addr = in_addr(s_addr: v.bigEndian)
            self.init(sin, host: "")
        case .v6(let bytes):
            var sin6 = sockaddr_in6()
            sin6.sin6_family = sa_family_t(AF_INET6)
            sin6.sin6_port = port.bigEndian
            withUnsafeMutableBytes(of: &sin6.sin6_addr) { $0.copyBytes(from: bytes.prefix(16)) }
            self.init(sin6, host: "")
        }
    }

    public init(_ listen: ListenAddress) {
        self.init(listen.address, port: listen.port)
    }
}
