import Logging
import NIOCore
import NIOEmbedded
import PosternCore
import PosternTunnel
import XCTest

/// A session is freed with its connection. It kept its `ChannelHandlerContext`, which holds the
/// session as its handler, so every connection to the service port (and every tunnel a mediator
/// dialed) stayed in memory with its delegate, datagram path and TLS state: ~60 KiB each, found by
/// churning connections in the lab (`Tests/lab/t_soak.sh`).
final class TunnelSessionLifetimeTests: XCTestCase {
    private func makeSession(on loop: EventLoop) -> TunnelSession {
        let machine = ServerSessionStateMachine(
            settings: SessionSettings(), sessionID: 7, serverNonce: [UInt8](repeating: 1, count: 32), secretFor: { _ in nil })
        return TunnelSession(
            machine: machine, settings: SessionSettings(), eventLoop: loop, logger: Logger(label: "test"),
            now: { NIODeadline.uptimeNanoseconds(1_000_000_000) })
    }

    /// A connection that closes before the handshake (a scan, a wrong secret, a TLS failure).
    func testSessionIsFreedWhenItsConnectionCloses() throws {
        weak var freed: TunnelSession?
        try {
            let channel = EmbeddedChannel()
            let session = makeSession(on: channel.embeddedEventLoop)
            freed = session
            try channel.pipeline.syncOperations.addHandler(session)
            try channel.connect(to: SocketAddress(ipAddress: "198.51.100.1", port: 4433)).wait()
            XCTAssertTrue(session.isOpen)
            try channel.close().wait()
            XCTAssertFalse(session.isOpen)
            // The embedded loop keeps cancelled tasks (the handshake deadline) until it runs them.
            channel.embeddedEventLoop.advanceTime(by: .hours(1))
        }()
        XCTAssertNil(freed, "the session outlived its closed connection")
    }

    /// The same after the peer closed it (EOF), the way most tunnels end.
    func testSessionIsFreedWhenThePeerCloses() throws {
        weak var freed: TunnelSession?
        try {
            let channel = EmbeddedChannel()
            let session = makeSession(on: channel.embeddedEventLoop)
            freed = session
            try channel.pipeline.syncOperations.addHandler(session)
            try channel.connect(to: SocketAddress(ipAddress: "198.51.100.1", port: 4433)).wait()
            channel.pipeline.fireChannelInactive()
            _ = try? channel.finish()
            channel.embeddedEventLoop.advanceTime(by: .hours(1))
        }()
        XCTAssertNil(freed, "the session outlived its closed connection")
    }
}
