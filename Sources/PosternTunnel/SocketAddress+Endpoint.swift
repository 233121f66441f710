import NIOCore
import PosternWire

extension SocketAddress {
    /// The wire form of a socket address; nil for Unix sockets.
    public var endpoint: Endpoint? {
        guard let ip = ipAddress, let a = IPAddress(ip), let p = port else { return nil }
        return Endpoint(a, UInt16(p))
    }

    /// `1.2.3.4:80` or `[fd00::1]:80`, for logs and the admin API.
    public var display: String { endpoint?.description ?? "\(self)" }
}
