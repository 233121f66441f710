import NIOCore
import NIOPosix
import XCTest

@testable import PosternMediator

#if canImport(Glibc)
    import Glibc
#endif

/// While the server is down the mediator logs `cannot reach server HOST:PORT: …` at every retry: the
/// reason in strerror(3)'s words, not NIO's nested error description.
final class MediatorConnectFailureTextTests: XCTestCase {
    func testARefusedConnectReadsConnectionRefused() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let probe = try await ServerBootstrap(group: group).bind(host: "127.0.0.1", port: 0).get()
        let port = try XCTUnwrap(probe.localAddress?.port)
        try await probe.close()
        do {
            _ = try await ClientBootstrap(group: group).connect(host: "127.0.0.1", port: port).get()
            XCTFail("connected to a closed port")
        } catch {
            XCTAssertEqual(MediatorService.connectFailureText(error), "Connection refused")
        }
        XCTAssertEqual(MediatorService.connectFailureText(IOError(errnoCode: ENETUNREACH, reason: "connect")), "Network is unreachable")
        try await group.shutdownGracefully()
    }
}
