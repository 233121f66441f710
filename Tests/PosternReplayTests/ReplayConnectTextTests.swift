import NIOCore
import NIOPosix
import XCTest

@testable import PosternReplay

#if canImport(Glibc)
    import Glibc
#endif

/// `postern replay --to` without a responder said `cannot reach the responder's control address
/// [IPv4]203.0.113.10/203.0.113.10:8001: connection reset (error set): Connection refused) (errno:
/// 111)`; it says `203.0.113.10:8001: Connection refused`.
final class ReplayConnectTextTests: XCTestCase {
    func testAddressesAsWritten() throws {
        XCTAssertEqual(ReplayInitiator.text(try SocketAddress(ipAddress: "203.0.113.10", port: 8001)), "203.0.113.10:8001")
        XCTAssertEqual(ReplayInitiator.text(try SocketAddress(ipAddress: "fd00::10", port: 8001)), "[fd00::10]:8001")
    }

    func testARefusedConnectInStrerrorsWords() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        // A port nothing listens on: bound and closed again.
        let probe = try await ServerBootstrap(group: group).bind(host: "127.0.0.1", port: 0).get()
        let port = try XCTUnwrap(probe.localAddress?.port)
        try await probe.close()
        do {
            _ = try await ClientBootstrap(group: group).connect(host: "127.0.0.1", port: port).get()
            XCTFail("connected to a closed port")
        } catch {
            XCTAssertEqual(ReplayInitiator.connectText(error), "Connection refused")
        }
        XCTAssertEqual(ReplayInitiator.connectText(IOError(errnoCode: ECONNREFUSED, reason: "connect")), "Connection refused")
        try await group.shutdownGracefully()
    }
}
