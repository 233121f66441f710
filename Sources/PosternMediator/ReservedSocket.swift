// In a whole-module (release) build the module's C imports are shared: ICMPEcho's CPosternShims pulls
// <sys/socket.h> in through libmnl, and SOCK_STREAM & co. then belong to that clang module, not Glibc.
import CPosternShims
import NIOCore
import PosternWire
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// A TCP port opened by OPEN: a real socket bound to the address, so the port is taken in the kernel
/// (another program sees "address in use") until CONNECT or LISTEN decide what it becomes.
final class ReservedSocket {
    private(set) var descriptor: CInt
    let local: Endpoint

    /// The address it holds in `held` (nil once released).
    private var claim: IPAddress?

    private init(descriptor: CInt, local: Endpoint, claim: IPAddress) {
        self.descriptor = descriptor
        self.local = local
        self.claim = claim
    }

    /// The ports this process holds as reserved (bound, not yet listening) sockets, with their
    /// addresses. SO_REUSEADDR, wanted for TIME_WAIT, also lets Linux bind a second socket to a port
    /// as long as neither listens: without this, two OPENs of one port would both succeed.
    private static let held = Mutex<[UInt16: [IPAddress]]>([:])

    /// Records `address:port` as held; false when a reserved socket of this process holds the port on
    /// the same address, or either one is the wildcard of that family.
    private static func hold(_ address: IPAddress, _ port: UInt16) -> Bool {
        held.withLock { held in
            let holders = held[port] ?? []
            let overlaps = holders.contains { h in
                h.isIPv6 == address.isIPv6 && (h == address || h.isUnspecified || address.isUnspecified)
            }
            if overlaps { return false }
            held[port] = holders + [address]
            return true
        }
    }

    private func release() {
        guard let address = claim else { return }
        claim = nil
        let port = local.port
        Self.held.withLock { held in
            if let i = held[port]?.firstIndex(of: address) { held[port]?.remove(at: i) }
            if held[port]?.isEmpty == true { held[port] = nil }
        }
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
        guard hold(address, bound) else {
            Glibc.close(fd)
            throw IOError(errnoCode: EADDRINUSE, reason: "bind \(address.bracketed):\(port) (an opened port holds it)")
        }
        return ReservedSocket(descriptor: fd, local: Endpoint(address, bound), claim: address)
    }

    /// Turns the socket into a listening one and hands the descriptor over (to NIO).
    func takeForListening(backlog: Int32) throws -> CInt {
        guard Glibc.listen(descriptor, backlog) == 0 else { throw IOError(errnoCode: errno, reason: "listen") }
        let fd = descriptor
        descriptor = -1
        // Listening, the port is the kernel's to defend.
        release()
        return fd
    }

    func close() {
        if descriptor >= 0 {
            Glibc.close(descriptor)
            descriptor = -1
        }
        release()
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
