import Foundation
import Logging
import NIOCore
import NIOEmbedded
import PosternCore
import PosternTunnel
import XCTest

@testable import PosternServer

/// A link whose session ended before WELCOME is freed: the server's `onEstablished` handler holds the
/// link, and was dropped only when the session established, so every connection that never did (a
/// scan, a wrong secret, a TLS failure) kept its link, session and datagram path for good.
final class MediatorLinkLifetimeTests: XCTestCase {
    func testLinkThatNeverEstablishedIsFreedWhenItsSessionEnds() throws {
        weak var freedLink: MediatorLink?
        weak var freedSession: TunnelSession?
        try {
            let channel = EmbeddedChannel()
            let machine = ServerSessionStateMachine(
                settings: SessionSettings(), sessionID: 9, serverNonce: [UInt8](repeating: 1, count: 32), secretFor: { _ in nil })
            let session = TunnelSession(
                machine: machine, settings: SessionSettings(), eventLoop: channel.embeddedEventLoop, logger: Logger(label: "test"),
                now: { NIODeadline.uptimeNanoseconds(1_000_000_000) })
            let registry = MediatorRegistry(events: EventLog(clock: { Date(timeIntervalSince1970: 0) }), logger: Logger(label: "test"))
            let link = MediatorLink(session: session, registry: registry, connectedAt: Date(timeIntervalSince1970: 0))
            session.delegate = link
            // As ServerService does: the handler names the link and its session.
            link.onEstablished { _ = (link.name, session.isOpen) }
            freedLink = link
            freedSession = session
            try channel.pipeline.syncOperations.addHandler(session)
            try channel.connect(to: SocketAddress(ipAddress: "198.51.100.1", port: 4433)).wait()
            try channel.close().wait()
            channel.embeddedEventLoop.advanceTime(by: .hours(1))
        }()
        XCTAssertNil(freedLink, "the link outlived its session")
        XCTAssertNil(freedSession, "the session outlived its connection")
    }
}
