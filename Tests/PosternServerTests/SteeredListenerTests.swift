import NIOCore
import NIOPosix
import XCTest

@preconcurrency @testable import PosternServer

#if canImport(Glibc)
    import Glibc
#endif

/// A steered listener's sockets set SO_REUSEPORT, which the kernel also grants to another process
/// of the same user whose sockets set it: a second server started on the same port by mistake must
/// fail with "address in use", as a plain listener (`--threads 1`) does, not share the port.
final class SteeredListenerTests: XCTestCase {
    private var group: MultiThreadedEventLoopGroup!
    private var held: [CInt] = []

    override func setUp() {
        group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
    }

    override func tearDown() async throws {
        for fd in held { Glibc.close(fd) }
        try await group.shutdownGracefully()
    }

    /// A socket with SO_REUSEPORT on 127.0.0.1, a free port (TCP: listening), as another process's
    /// steered listener holds it; returns its port.
    private func holdReusePort(udp: Bool) throws -> Int {
        let fd = socket(AF_INET, Int32(udp ? SOCK_DGRAM.rawValue : SOCK_STREAM.rawValue), 0)
        XCTAssertGreaterThanOrEqual(fd, 0)
        held.append(fd)
        var one: CInt = 1
        XCTAssertEqual(setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, socklen_t(MemoryLayout<CInt>.size)), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) } }
        XCTAssertEqual(bound, 0)
        if !udp { XCTAssertEqual(listen(fd, 16), 0) }
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    private func bindTCP(_ port: Int) -> EventLoopFuture<SteeredListener> {
        Self.bindTCP(port, on: [group.next(), group.next()])
    }

    private static func bindTCP(_ port: Int, on loops: [EventLoop]) -> EventLoopFuture<SteeredListener> {
        SteeredListener.bind(
            to: try! SocketAddress(ipAddress: "127.0.0.1", port: port), count: 2, on: loops[0]
        ) { i in
            ServerBootstrap(group: loops[i]).childChannelInitializer { $0.close() }
        }
    }

    private func bindUDP(_ port: Int) -> EventLoopFuture<SteeredListener> {
        let loops = [group.next(), group.next()]
        return SteeredListener.bind(
            to: try! SocketAddress(ipAddress: "127.0.0.1", port: port), count: 2, on: loops[0],
            datagram: { i in DatagramBootstrap(group: loops[i]) })
    }

    private func assertAddressInUse(_ future: EventLoopFuture<SteeredListener>, file: StaticString = #filePath, line: UInt = #line) async {
        do {
            let listener = try await future.get()
            listener.close()
            XCTFail("bound a port another process's SO_REUSEPORT socket holds", file: file, line: line)
        } catch let error as IOError {
            XCTAssertEqual(error.errnoCode, EADDRINUSE, file: file, line: line)
        } catch {
            XCTFail("unexpected \(error)", file: file, line: line)
        }
    }

    func testATCPPortHeldWithReusePortElsewhereIsInUse() async throws {
        await assertAddressInUse(bindTCP(try holdReusePort(udp: false)))
    }

    func testAUDPPortHeldWithReusePortElsewhereIsInUse() async throws {
        await assertAddressInUse(bindUDP(try holdReusePort(udp: true)))
    }

    /// A reload restarts a forward on its port at once (or starts a removed one again): the new
    /// listener waits for the old one's sockets to close instead of taking them for another process's.
    func testAPortJustClosedByThisProcessBindsAgainAtOnce() async throws {
        let port = try holdReusePort(udp: false)
        Glibc.close(held.removeLast())
        // On the control loop, as a reload does: the other loop's socket is still open when the next
        // bind begins.
        let loops = Array(group.makeIterator())
        let control = loops[0]
        var listener = try await Self.bindTCP(port, on: loops).get()
        for _ in 0..<5 {
            nonisolated(unsafe) let old = listener
            listener = try await control.flatSubmit {
                old.close()
                return Self.bindTCP(port, on: loops)
            }.get()
        }
        listener.close()
        let last = try await bindTCP(port).get()
        XCTAssertEqual(last.channels.map { $0.localAddress?.port }, [port, port])
        last.close()
        let udpPort = try holdReusePort(udp: true)
        Glibc.close(held.removeLast())
        for _ in 0..<5 { try await bindUDP(udpPort).get().close() }
    }

    /// The use: a free port (the one just released) binds, all sockets on it; and again after close.
    func testAFreePortBindsAllItsSocketsAndAgainAfterClose() async throws {
        let port = try holdReusePort(udp: false)
        Glibc.close(held.removeLast())
        for _ in 0..<2 {
            let listener = try await bindTCP(port).get()
            XCTAssertEqual(listener.channels.count, 2)
            XCTAssertEqual(listener.channels.map { $0.localAddress?.port }, [port, port])
            listener.close()
            for c in listener.channels { try? await c.closeFuture.get() }
        }
        let udp = try await bindUDP(port).get()
        XCTAssertEqual(udp.channels.count, 2)
        udp.close()
    }
}
