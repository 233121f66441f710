import Foundation
import Logging
import NIOCore
import NIOEmbedded
import PosternCore
import PosternTunnel
import PosternWire
import XCTest

@testable import PosternServer

/// A real `MediatorLink` behind a real server `TunnelSession` on an `EmbeddedChannel`, brought to
/// established by a real mediator state machine: what the link's frame-level tests (ECHO, TUN_STATS)
/// drive, frames in through `channel.writeInbound`, frames out through `framesOut()`.
final class EstablishedLinkHarness {
    let channel = EmbeddedChannel()
    private(set) var link: MediatorLink!
    private var decoder = FrameDecoder()
    private var written = ByteBuffer()

    init() throws {
        let t0 = NIODeadline.uptimeNanoseconds(1_000_000_000)
        let secret = Array("correct horse battery staple".utf8)
        let settings = SessionSettings()
        let session = TunnelSession(
            machine: ServerSessionStateMachine(
                settings: settings, sessionID: 42, serverNonce: [UInt8](repeating: 1, count: 32),
                secretFor: { $0 == "acme" ? secret : nil }),
            settings: settings, eventLoop: channel.embeddedEventLoop, logger: Logger(label: "test"), now: { t0 })
        let registry = MediatorRegistry(events: EventLog(clock: { Date(timeIntervalSince1970: 0) }), logger: Logger(label: "test"))
        link = MediatorLink(session: session, registry: registry, connectedAt: Date(timeIntervalSince1970: 0))
        session.delegate = link
        try channel.pipeline.syncOperations.addHandler(session)
        try channel.connect(to: SocketAddress(ipAddress: "198.51.100.1", port: 4433)).wait()
        var mediator = MediatorSessionStateMachine(
            name: "acme", secret: secret, nonce: [UInt8](repeating: 2, count: 32), softwareVersion: "test", settings: settings)
        _ = mediator.transportReady(.plain, now: t0)
        func sent(_ actions: [SessionAction]) -> [Frame] {
            actions.compactMap { if case .send(let f) = $0 { return f } else { return nil } }
        }
        var toServer = sent(mediator.start(now: t0))
        for _ in 0..<10 where !toServer.isEmpty {
            for frame in toServer { try channel.writeInbound(frame) }
            toServer = try framesOut().flatMap { sent(mediator.receive($0, now: t0)) }
        }
        XCTAssertTrue(link.isOpen, "the handshake completed")
    }

    func finish() {
        _ = try? channel.finish()
    }

    /// The frames the server has written since the last call.
    func framesOut() throws -> [Frame] {
        channel.embeddedEventLoop.run()
        while var buffer = try channel.readOutbound(as: ByteBuffer.self) { written.writeBuffer(&buffer) }
        var frames: [Frame] = []
        while let frame = try decoder.next(&written) { frames.append(frame) }
        return frames
    }

    /// The mediator's ENVIRONMENT with `capabilities`.
    func environment(_ capabilities: MediatorEnvironment.Capabilities) throws {
        try channel.writeInbound(Frame.environment(.init(hostname: "m", softwareVersion: "test", capabilities: capabilities)))
    }
}
