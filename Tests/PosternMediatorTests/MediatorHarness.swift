import Logging
import NIOCore
import NIOPosix
import PosternCore
import PosternTunnel
import PosternWire
import XCTest

@testable import PosternMediator

/// A whole tunnel over loopback TCP without root: a server end (a real `TunnelSession` in the server
/// role that sends requests and records the answers) and a mediator end (`RemoteSocketAPI` behind a
/// real `TunnelSession`), both on one event loop as in the mediator. The mediator's clock is the
/// harness's: tests move it.
final class MediatorHarness {
    struct Timeout: Error {}
    struct UnexpectedAnswer: Error {}

    let loop: EventLoop
    private let group: MultiThreadedEventLoopGroup
    private let answers: AnswerRecorder
    private var listener: Channel?
    private var serverSession: TunnelSession?
    private(set) var api: RemoteSocketAPI?
    private let mediatorClosed: EventLoopPromise<SessionEnd>
    /// The mediator's clock (touched on `loop` only).
    private var now = NIODeadline.uptimeNanoseconds(1_000_000_000)

    /// Both ends' session settings (windows, payload limits).
    private let settings: SessionSettings

    init(settings: SessionSettings = SessionSettings(), _ configure: (inout MediatorConfiguration) throws -> Void = { _ in }) throws {
        self.settings = settings
        group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        loop = group.next()
        answers = AnswerRecorder(eventLoop: loop)
        mediatorClosed = loop.makePromise()
        do {
            try start(configure)
        } catch {
            shutdown()
            throw error
        }
    }

    private func start(_ configure: (inout MediatorConfiguration) throws -> Void) throws {
        let logger = Logger(label: "postern-test", factory: { _ in SwiftLogNoOpLogHandler() })
        let settings = settings
        let secret = Array("a secret for the harness".utf8)
        let answers = answers
        let established = loop.makePromise(of: Void.self)
        answers.onEstablished = { established.succeed(()) }
        let listener = try ServerBootstrap(group: group)
            .childChannelInitializer { [self] channel in
                let machine = ServerSessionStateMachine(
                    settings: settings, sessionID: 1, serverNonce: [UInt8](repeating: 7, count: 32),
                    secretFor: { $0 == "acme" ? secret : nil })
                let session = TunnelSession(
                    machine: machine, settings: settings, eventLoop: channel.eventLoop, logger: logger, now: { .now() })
                session.delegate = answers
                serverSession = session
                return channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandlers(
                        FrameDecoderHandler(maxPayload: settings.maxPayload), session)
                }
            }
            .bind(host: "127.0.0.1", port: 0).wait()
        self.listener = listener
        let port = listener.localAddress!.port!

        var configuration = MediatorConfiguration(
            // The LAN of these tests is loopback, which only a rule naming it opens.
            serverHost: "127.0.0.1", serverPort: port, name: "acme", secret: secret,
            policy: Policy(allow: [try AllowRule(parsing: "127.0.0.0/8")]),
            settings: settings, softwareVersion: "test")
        try configure(&configuration)
        let api = RemoteSocketAPI(configuration: configuration, eventLoop: loop, logger: logger, now: { [unowned self] in now })
        api.onClosed = { [mediatorClosed] end in mediatorClosed.succeed(end) }
        self.api = api
        let session = TunnelSession(
            machine: MediatorSessionStateMachine(
                name: "acme", secret: secret, nonce: [UInt8](repeating: 9, count: 32), softwareVersion: "test",
                settings: settings),
            settings: settings, eventLoop: loop, logger: logger, now: { .now() })
        session.delegate = api
        _ = try ClientBootstrap(group: loop)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandlers(
                        FrameDecoderHandler(maxPayload: settings.maxPayload), session)
                }
            }
            .connect(host: "127.0.0.1", port: port).wait()
        try established.futureResult.wait()
    }

    func shutdown() {
        try? group.syncShutdownGracefully()
    }

    // MARK: - Requests

    /// Sends `frames` in one event-loop turn (so the mediator reads them together) and waits for the
    /// answer (DONE or FAILED) to each.
    func send(_ frames: [Frame]) throws -> [Frame] {
        let futures = try loop.submit { [self] in
            let waiting = frames.map { answers.answer(to: Self.requestID($0)) }
            for frame in frames { serverSession?.send(frame) }
            return waiting
        }.wait()
        return try futures.map { try $0.wait() }
    }

    /// Sends `frames` in one event-loop turn, relay frames among them (a pipelined CONNECT's DATA,
    /// FINISHED, RESET, docs/protocol.md §5.3), and waits for the answer to each request among them.
    func sendMixed(_ frames: [Frame]) throws -> [Frame] {
        let futures = try loop.submit { [self] in
            let waiting = frames.compactMap { Self.isRequest($0) ? answers.answer(to: Self.requestID($0)) : nil }
            for frame in frames { serverSession?.send(frame) }
            return waiting
        }.wait()
        return try futures.map { try $0.wait() }
    }

    /// Takes the relay frames of stream port `portID` on the server's end.
    func receiveStream(portID: UInt32) throws -> StreamRecorder {
        try loop.submit { [self] in
            let recorder = StreamRecorder(portID: portID, eventLoop: loop)
            serverSession?.register(recorder)
            return recorder
        }.wait()
    }

    func done(_ frame: Frame, file: StaticString = #filePath, line: UInt = #line) throws -> Frame.Done {
        let answer = try send([frame])[0]
        guard case .done(let done) = answer else {
            XCTFail("\(frame.name) answered \(answer)", file: file, line: line)
            throw UnexpectedAnswer()
        }
        return done
    }

    func failed(_ frame: Frame, file: StaticString = #filePath, line: UInt = #line) throws -> Frame.Failed {
        let answer = try send([frame])[0]
        guard case .failed(let failed) = answer else {
            XCTFail("\(frame.name) answered \(answer)", file: file, line: line)
            throw UnexpectedAnswer()
        }
        return failed
    }

    /// The next ACCEPTED the mediator sends.
    func nextAccepted() throws -> Frame.Accepted {
        try loop.flatSubmit { [answers] in answers.nextAccepted() }.wait()
    }

    /// Moves the mediator's clock.
    func advanceClock(by amount: TimeAmount) throws {
        try loop.submit { [self] in now = now + amount }.wait()
    }

    /// Ends the tunnel from the server's side and waits until the mediator has released its ports.
    func closeTunnel() throws -> SessionEnd {
        try loop.submit { [self] in serverSession?.goAway(.shuttingDown, "test over") }.wait()
        return try mediatorClosed.futureResult.wait()
    }

    /// Takes the DATAGRAM frames of `portID` on the server's end (as a server-side UDP port would).
    func receiveDatagrams(portID: UInt32) throws -> DatagramRecorder {
        try loop.submit { [self] in
            let recorder = DatagramRecorder(portID: portID, eventLoop: loop)
            serverSession?.register(recorder)
            return recorder
        }.wait()
    }

    /// Sends a DATAGRAM from the server's end: the mediator sends it from port `portID` to `peer`.
    func sendDatagram(portID: UInt32, to peer: Endpoint, _ bytes: [UInt8]) throws {
        try loop.submit { [self] in
            serverSession?.send(.datagram(.init(portID: portID, peer: peer, bytes: ByteBuffer(bytes: bytes))))
        }.wait()
    }

    /// ICMP echo on the mediator end (`MediatorService` sets it for every session).
    func setEcho(_ echo: ICMPEcho?) throws {
        try loop.submit { [self] in api?.icmpEcho = echo }.wait()
    }

    func portCount() throws -> Int {
        try loop.submit { [self] in api?.ports.count ?? -1 }.wait()
    }

    private static func isRequest(_ frame: Frame) -> Bool {
        switch frame {
        case .open, .redirect, .connect, .listen, .close, .echo: return true
        default: return false
        }
    }

    private static func requestID(_ frame: Frame) -> UInt32 {
        switch frame {
        case .open(let f): return f.requestID
        case .redirect(let f): return f.requestID
        case .connect(let f): return f.requestID
        case .listen(let f): return f.requestID
        case .close(let f): return f.requestID
        case .echo(let f): return f.requestID
        default: preconditionFailure("\(frame.name) is not a request")
        }
    }
}

/// The server end's delegate: hands each answer to whoever waits for its request id.
private final class AnswerRecorder: TunnelSessionDelegate {
    private let eventLoop: EventLoop
    private var waiting: [UInt32: EventLoopPromise<Frame>] = [:]
    private var accepted: [Frame.Accepted] = []
    private var acceptWaiter: EventLoopPromise<Frame.Accepted>?
    var onEstablished: (() -> Void)?

    init(eventLoop: EventLoop) { self.eventLoop = eventLoop }

    func answer(to requestID: UInt32) -> EventLoopFuture<Frame> {
        let promise = eventLoop.makePromise(of: Frame.self)
        waiting[requestID] = promise
        timeOut { [self] in waiting.removeValue(forKey: requestID) }
        return promise.futureResult
    }

    func nextAccepted() -> EventLoopFuture<Frame.Accepted> {
        if !accepted.isEmpty { return eventLoop.makeSucceededFuture(accepted.removeFirst()) }
        let promise = eventLoop.makePromise(of: Frame.Accepted.self)
        acceptWaiter = promise
        timeOut { [self] () -> EventLoopPromise<Frame.Accepted>? in
            guard let waiter = acceptWaiter, waiter.futureResult === promise.futureResult else { return nil }
            acceptWaiter = nil
            return waiter
        }
        return promise.futureResult
    }

    /// Fails a wait that is still open after 10 s, so a missing answer fails the test instead of hanging it.
    private func timeOut<T>(_ take: @escaping () -> EventLoopPromise<T>?) {
        eventLoop.scheduleTask(in: .seconds(10)) { take()?.fail(MediatorHarness.Timeout()) }
    }

    func sessionEstablished(_ session: TunnelSession, _ info: EstablishedSession) { onEstablished?() }

    func session(_ session: TunnelSession, received frame: Frame) {
        switch frame {
        case .done(let d): waiting.removeValue(forKey: d.requestID)?.succeed(frame)
        case .failed(let f): waiting.removeValue(forKey: f.requestID)?.succeed(frame)
        case .echoReply(let r): waiting.removeValue(forKey: r.requestID)?.succeed(frame)
        case .accepted(let a):
            if let waiter = acceptWaiter {
                acceptWaiter = nil
                waiter.succeed(a)
            } else {
                accepted.append(a)
            }
        default: break
        }
    }

    func sessionClosed(_ session: TunnelSession, _ end: SessionEnd) {}
}

/// The server end of one UDP port: the DATAGRAM frames the mediator sent for it.
final class DatagramRecorder: TunnelPort {
    let portID: UInt32
    private let eventLoop: EventLoop
    private var received: [Frame.Datagram] = []

    init(portID: UInt32, eventLoop: EventLoop) {
        self.portID = portID
        self.eventLoop = eventLoop
    }

    func tunnelReceived(_ frame: Frame) {
        if case .datagram(let d) = frame { received.append(d) }
    }

    func tunnelBecameWritable() {}
    func tunnelClosed() {}

    /// Waits up to 5 s for `count` datagrams (or returns what came).
    func datagrams(_ count: Int) throws -> [Frame.Datagram] {
        let deadline = NIODeadline.now() + .seconds(5)
        while true {
            let got = try eventLoop.submit { self.received }.wait()
            if got.count >= count || NIODeadline.now() > deadline { return got }
            usleep(20_000)
        }
    }
}

/// The server end of one stream port: the relay frames the mediator sent for it.
final class StreamRecorder: TunnelPort {
    let portID: UInt32
    private let eventLoop: EventLoop
    private var received: [Frame] = []

    init(portID: UInt32, eventLoop: EventLoop) {
        self.portID = portID
        self.eventLoop = eventLoop
    }

    func tunnelReceived(_ frame: Frame) { received.append(frame) }
    func tunnelBecameWritable() {}
    func tunnelClosed() {}

    /// Waits up to 5 s until `done` says the frames so far are enough (or returns what came).
    func frames(until done: ([Frame]) -> Bool) throws -> [Frame] {
        let deadline = NIODeadline.now() + .seconds(5)
        while true {
            let got = try eventLoop.submit { self.received }.wait()
            if done(got) || NIODeadline.now() > deadline { return got }
            usleep(10_000)
        }
    }
}
