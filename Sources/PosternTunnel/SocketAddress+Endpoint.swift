import NIOCore
import PosternWire

#if canImport(Glibc)
    import Glibc
#endif

extension SocketAddress {
    /// The wire form of a socket address; nil for Unix sockets.
    /// Read from the sockaddr itself: through `ipAddress` it would be formatted by inet_ntop and
    /// parsed back by inet_pton, for every connection (a CONNECT's DONE) and datagram that asks.
    public var endpoint: Endpoint? {
        switch self {
        case .v4(let a):
            return Endpoint(.v4(UInt32(bigEndian: a.address.sin_addr.s_addr)), UInt16(bigEndian: a.address.sin_port))
        case .v6(let a):
            var address = a.address
            let bytes = withUnsafeBytes(of: &address.sin6_addr) { Array($0) }
            return Endpoint(.v6(bytes), UInt16(bigEndian: address.sin6_port))
        case .unixDomainSocket:
            return nil
        }
    }

    /// `1.2.3.4:80` or `[fd00::1]:80`, for logs and the admin API.
    public var display: String { endpoint?.description ?? "\(self)" }
}
