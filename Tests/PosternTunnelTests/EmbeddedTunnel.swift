import Logging
import NIOCore
import NIOEmbedded
import PosternCore
import PosternTunnel
import PosternWire
import XCTest

/// The server end of an established tunnel, in memory: a real `TunnelSession` on an `EmbeddedChannel`,
/// brought to established by a real `MediatorSessionStateMachine` on the other side (HELLO,
/// CHALLENGE, AUTHENTICATE, WELCOME). What the session writes is decoded with the real `FrameDecoder`.
final class EmbeddedTunnel {
    let channel = EmbeddedChannel()
    let session: TunnelSession
    private var decoder = FrameDecoder()
    private var written = ByteBuffer()

    /// `window`: our receive window per port (the server's); `peerWindow`: the mediator's, which is
    /// the credit our ports start with.
    init(window: UInt32 = 100, peerWindow: UInt32 = 1000, maxBufferedBytes: Int = 1 << 20) throws {
        let t0 = NIODeadline.uptimeNanoseconds(1_000_000_000)
        let secret = Array("correct horse battery staple".utf8)
        var settings = SessionSettings()
        settings.initialWindow = window
        settings.maxBufferedBytes = maxBufferedBytes
        let machine = ServerSessionStateMachine(
            settings: settings, sessionID: 42, serverNonce: [UInt8](repeating: 1, count: 32),
            secretFor: { $0 == "acme" ? secret : nil })
        session = TunnelSession(
            machine: machine, settings: settings, eventLoop: channel.embeddedEventLoop, logger: Logger(label: "test"),
            now: { t0 })
        try channel.pipeline.syncOperations.addHandler(session)
        try channel.connect(to: SocketAddress(ipAddress: "198.51.100.1", port: 4433)).wait()

        var mediatorSettings = SessionSettings()
        mediatorSettings.initialWindow = peerWindow
        var mediator = MediatorSessionStateMachine(
            name: "acme", secret: secret, nonce: [UInt8](repeating: 2, count: 32), softwareVersion: "test",
            settings: mediatorSettings)
        _ = mediator.transportReady(.plain, now: t0)
        var toServer = Self.sent(mediator.start(now: t0))
        var rounds = 0
        while !toServer.isEmpty && rounds < 10 {
            for frame in toServer { try channel.writeInbound(frame) }
            toServer = try framesOut().flatMap { Self.sent(mediator.receive($0, now: t0)) }
            rounds += 1
        }
        guard session.established != nil, mediator.isEstablished else {
            throw TestFailure("the handshake did not complete")
        }
    }

    private static func sent(_ actions: [SessionAction]) -> [Frame] {
        actions.compactMap { if case .send(let f) = $0 { return f } else { return nil } }
    }

    /// A frame from the mediator, as the tunnel's decoder would pass it on.
    func deliver(_ frame: Frame) throws {
        try channel.writeInbound(frame)
    }

    /// Every frame the session wrote since the last call, after its end-of-turn flush.
    func framesOut() throws -> [Frame] {
        channel.embeddedEventLoop.run()
        while var buffer = try channel.readOutbound(as: ByteBuffer.self) {
            written.writeBuffer(&buffer)
        }
        var frames: [Frame] = []
        while let frame = try decoder.next(&written) { frames.append(frame) }
        XCTAssertEqual(written.readableBytes, 0, "part of a frame was written")
        return frames
    }

    /// The tunnel connection's send buffer fills or drains.
    func setWritable(_ writable: Bool) {
        channel.isWritable = writable
        channel.pipeline.fireChannelWritabilityChanged()
    }
}

struct TestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Sits between a relayed socket channel and the head of its pipeline and records what the relay
/// asks of the socket: reads, writes and closes, in order. `EmbeddedChannel` closes fully on any
/// close, so a shutdown of the output is recorded and kept from it, as a real socket keeps its input.
final class SocketRecorder: ChannelOutboundHandler {
    typealias OutboundIn = ByteBuffer

    enum Event: Equatable {
        case read
        case write(String)
        case close(CloseMode)
    }

    private(set) var events: [Event] = []

    /// The events since the last call.
    func take() -> [Event] {
        defer { events = [] }
        return events
    }

    func read(context: ChannelHandlerContext) {
        events.append(.read)
        context.read()
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        events.append(.write(String(buffer: unwrapOutboundIn(data))))
        context.write(data, promise: promise)
    }

    func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        events.append(.close(mode))
        if mode == .output {
            promise?.succeed(())
            return
        }
        context.close(mode: mode, promise: promise)
    }
}

/// One relayed socket: an `EmbeddedChannel` with a `SocketRecorder`, connected.
final class EmbeddedSocket {
    let channel = EmbeddedChannel()
    let recorder = SocketRecorder()

    init() throws {
        try channel.pipeline.syncOperations.addHandler(recorder)
        try channel.connect(to: SocketAddress(ipAddress: "192.168.77.10", port: 80)).wait()
    }

    func join(_ relay: StreamRelay) throws {
        try channel.pipeline.syncOperations.addHandler(relay)
    }

    /// Bytes from the socket's peer, in one read.
    func receive(_ text: String) throws {
        try channel.writeInbound(ByteBuffer(string: text))
    }

    /// The socket's peer sent FIN (a half-close: NIO's input-closed event).
    func receiveEOF() {
        channel.pipeline.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
    }
}
