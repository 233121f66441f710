// In a whole-module (release) build the module's C imports are shared: ICMPEcho's CPosternShims pulls
// <sys/socket.h> in through libmnl, and SOCK_STREAM & co. then belong to that clang module, not Glibc.
import CPosternShims
import NIOCore
import PosternWire

#if canImport(Glibc)
    import Glibc
#endif

/// A TCP port opened by OPEN: a real socket bound to the address, so the port is taken in the kernel
/// (another program sees "address in use") until CONNECT or LISTEN decide what it becomes.
final class ReservedSocket {
    private(set) var descriptor: CInt
    let local: Endpoint

    private init(descriptor: CInt, local: Endpoint) {
        self.descriptor = descriptor
        self.local = local
    }

    deinit { close() }

    /// Binds `address:port`, or with `exact == false` the first free port from `port` upwards.
    static func bind(address: IPAddress, port: UInt16, exact: Bool) throws -> ReservedSocket {
        var candidate = port
        while true {
            do {
                return try bindOnce(address: address, port: candidate)
            } catch let error as IOError where !exact && error.errnoCode == EADDRINUSE && candidate < UInt16.max && candidate != 0 {
                candidate += 1
            }
        }
    }

    private static func bindOnce(address: IPAddress, port: UInt16) throws -> ReservedSocket {
        let family = address.isIPv6 ? AF_INET6 : AF_INET
        let fd = socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw IOError(errnoCode: errno, reason: "socket") }
        // Lets a listener come back at once after a reconnect, with old connections in TIME_WAIT.
        var one: CInt = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<CInt>.size))
        if address.isIPv6 {
            setsockopt(fd, CInt(IPPROTO_IPV6), IPV6_V6ONLY, &one, socklen_t(MemoryLayout<CInt>.size))
        }
        let socketAddress = try SocketAddress(ipAddress: address, port: port)
        let rc = socketAddress.withSockAddr { sa, len in Glibc.bind(fd, sa, socklen_t(len)) }
        guard rc == 0 else {
            let e = errno
            Glibc.close(fd)
            throw IOError(errnoCode: e, reason: "bind \(address.bracketed):\(port)")
        }
        // Read back the port the kernel chose (port 0) so the answer carries the real one.
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        _ = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        let bound = SocketAddress.portOf(storage) ?? port
        return ReservedSocket(descriptor: fd, local: Endpoint(address, bound))
    }

    /// Turns the socket into a listening one and hands the descriptor over (to NIO).
    func takeForListening(backlog: Int32) throws -> CInt {
        guard Glibc.listen(descriptor, backlog) == 0 else { throw IOError(errnoCode: errno, reason: "listen") }
        let fd = descriptor
        descriptor = -1
        return fd
    }

    func close() {
        if descriptor >= 0 {
            Glibc.close(descriptor)
            descriptor = -1
        }
    }
}

extension SocketAddress {
    init(ipAddress: IPAddress, port: UInt16) throws {
        try self.init(ipAddress: ipAddress.description, port: Int(port))
    }

    static func portOf(_ storage: sockaddr_storage) -> UInt16? {
        var s = storage
        switch Int32(s.ss_family) {
        case AF_INET:
            return withUnsafePointer(to: &s) {
                $0.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { UInt16(bigEndian: $0.pointee.sin_port) }
            }
        case AF_INET6:
            return withUnsafePointer(to: &s) {
                $0.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { UInt16(bigEndian: $0.pointee.sin6_port) }
            }
        default:
            return nil
        }
    }

}
