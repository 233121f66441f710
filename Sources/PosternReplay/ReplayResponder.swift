import Foundation
import NIOCore
import NIOPosix
import PosternCapture

/// The LAN side of a stream-mode replay (`postern replay CAPTURE --respond ADDR`): listens for TCP
/// and UDP on ADDR and plays each flow's responder. A control connection (`--control`, reached by the
/// initiator through a second forward) says which flow the next connection or new UDP peer belongs
/// to; the flows' own bytes are never changed. One control session at a time; it runs until stopped.
///
/// Control lines (initiator -> responder / answers):
///   HELLO <digest>  -> OK | ERR <why>         same capture, same flows
///   NEXT <n>        -> READY <n> | ERR <why>   the next connection / new UDP peer is flow n
///                   -> ACCEPTED <n>            it arrived
///   CANCEL <n>                                 it will not come
///   DONE            -> RESULT <json>... END    every flow's check of what the responder received
public final class ReplayResponder: @unchecked Sendable {
    // All mutable state is touched on the one event loop only.
    let summary: CaptureSummary
    let flows: [Int: Flow]
    let listen: SocketAddress
    let control: SocketAddress
    let mode: ReplayPacing.Mode
    let timeout: TimeAmount
    let log: (String) -> Void
    private let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    private var loop: EventLoop { group.next() }

    private var session: Channel?
    private var sessionID = 0
    private var pacing: ReplayPacing?
    private var pending: Int?
    private var running = 0
    private var doneAsked = false
    private var results: [SideResult] = []
    private var udpPeers: [SocketAddress: DatagramFlowRunner] = [:]
    private var udpChannel: Channel?
    private var listeners: [Channel] = []

    public init(
        summary: CaptureSummary, listen: SocketAddress, control: SocketAddress, mode: ReplayPacing.Mode, timeout: TimeAmount,
        log: @escaping (String) -> Void
    ) {
        self.summary = summary
        self.flows = Dictionary(uniqueKeysWithValues: summary.flows.filter { ReplayReport.skipReason($0) == nil }.map { ($0.number, $0) })
        self.listen = listen
        self.control = control
        self.mode = mode
        self.timeout = timeout
        self.log = log
    }

    /// Binds the three sockets and serves until the process ends.
    public func run() async throws {
        let loop = self.loop
        let stream = try await ServerBootstrap(group: loop)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.allowRemoteHalfClosure, value: true)
            .childChannelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture { try self.accepted(channel) }
            }
            .bind(to: listen).get()
        let datagrams = try await DatagramBootstrap(group: loop)
            .channelOption(.socketOption(.so_reuseaddr), value: 1)
            .channelOption(.recvAllocator, value: FixedSizeRecvByteBufferAllocator(capacity: 65_536))
            .channelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(DatagramInbound { self.datagram($0) })
                }
            }
            .bind(to: listen).get()
        let controlServer = try await ServerBootstrap(group: loop)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture { try self.controlAccepted(channel) }
            }
            .bind(to: control).get()
        try await loop.submit {
            self.udpChannel = datagrams
            self.listeners = [stream, datagrams, controlServer]
        }.get()
        log(
            "replay responder: \(summary.flows.count) flows (\(flows.count) replayable), listening on \(listen) (tcp, udp), control on \(control)"
        )
        try await controlServer.closeFuture.get()
        try? await stream.close()
        try? await datagrams.close()
        try? await group.shutdownGracefully()
    }

    /// Closes the listening sockets: `run` returns (tests; the command runs until killed).
    public func stop() {
        loop.execute { [self] in
            for channel in listeners { channel.close(promise: nil) }
            session?.close(promise: nil)
        }
    }

    // MARK: - Control

    private func controlAccepted(_ channel: Channel) throws {
        guard session == nil else {
            ControlLines.send("ERR busy: another replay is running", on: channel)
            _ = channel.eventLoop.scheduleTask(in: .milliseconds(100)) { channel.close(promise: nil) }
            return
        }
        sessionID += 1
        session = channel
        pending = nil
        running = 0
        doneAsked = false
        results = []
        udpPeers = [:]
        pacing = ReplayPacing(mode: mode, captureStart: summary.flows.first?.startTime ?? 0, replayStart: .now())
        let lines = ControlLines()
        let id = sessionID
        lines.onLine = { [self] line in if id == sessionID { self.line(line, on: channel) } }
        lines.onClose = { [self] _ in
            if id == sessionID {
                session = nil
                pending = nil
            }
        }
        try channel.pipeline.syncOperations.addHandler(lines)
    }

    private func line(_ line: String, on channel: Channel) {
        let words = line.split(separator: " ")
        switch (words.first, words.count) {
        case ("HELLO", 2):
            if words[1] == summary.digest[...] {
                pacing = ReplayPacing(mode: mode, captureStart: summary.flows.first?.startTime ?? 0, replayStart: .now())
                ControlLines.send("OK", on: channel)
            } else {
                ControlLines.send(
                    "ERR the responder read its capture into other flows (digest \(summary.digest)): are both sides replaying the same file?",
                    on: channel)
            }
        case ("NEXT", 2):
            guard let n = Int(words[1]), flows[n] != nil else {
                ControlLines.send("ERR no replayable flow \(words[1])", on: channel)
                return
            }
            pending = n
            ControlLines.send("READY \(n)", on: channel)
        case ("CANCEL", 2):
            if pending.map(String.init) == String(words[1]) { pending = nil }
        case ("DONE", 1):
            doneAsked = true
            sendResultsIfDone()
        default:
            ControlLines.send("ERR unknown control line", on: channel)
        }
    }

    private func flowDone(_ id: Int, _ result: SideResult) {
        guard id == sessionID else { return }
        results.append(result)
        running -= 1
        sendResultsIfDone()
    }

    private func sendResultsIfDone() {
        guard doneAsked, running == 0, let session else { return }
        let encoder = JSONEncoder()
        for result in results {
            guard let json = try? encoder.encode(result) else { continue }
            ControlLines.send("RESULT " + String(decoding: json, as: UTF8.self), on: session)
        }
        ControlLines.send("END", on: session)
        doneAsked = false
    }

    // MARK: - Flows

    private func accepted(_ channel: Channel) throws {
        guard let n = pending, let flow = flows[n], flow.transport == .tcp, let session, let pacing else {
            // Not announced: not part of a replay.
            channel.close(promise: nil)
            return
        }
        pending = nil
        running += 1
        let id = sessionID
        let handler = StreamFlowHandler(flow: flow, side: .fromResponder, pacing: pacing, timeout: timeout) { [self] check, ms, problem in
            flowDone(id, SideResult(flow: n, check: check, milliseconds: ms, problem: problem))
        }
        try channel.pipeline.syncOperations.addHandler(handler)
        ControlLines.send("ACCEPTED \(n)", on: session)
    }

    private func datagram(_ envelope: AddressedEnvelope<ByteBuffer>) {
        var data = envelope.data
        let bytes = data.readBytes(length: data.readableBytes) ?? []
        if let runner = udpPeers[envelope.remoteAddress] {
            runner.receive(bytes)
            return
        }
        guard let n = pending, let flow = flows[n], flow.transport == .udp, let session, let pacing, let udpChannel else { return }
        pending = nil
        running += 1
        let id = sessionID
        let peer = envelope.remoteAddress
        let runner = DatagramFlowRunner(
            flow: flow, side: .fromResponder, pacing: pacing, timeout: timeout, eventLoop: udpChannel.eventLoop,
            send: { bytes in
                var buffer = udpChannel.allocator.buffer(capacity: bytes.count)
                buffer.writeBytes(bytes)
                udpChannel.writeAndFlush(AddressedEnvelope(remoteAddress: peer, data: buffer), promise: nil)
            },
            onDone: { [self] check, ms, problem in
                flowDone(id, SideResult(flow: n, check: check, milliseconds: ms, problem: problem))
            })
        udpPeers[peer] = runner
        ControlLines.send("ACCEPTED \(n)", on: session)
        runner.start()
        runner.receive(bytes)
    }
}

/// Hands each datagram of a UDP channel to a closure.
final class DatagramInbound: ChannelInboundHandler {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>
    private let onDatagram: (AddressedEnvelope<ByteBuffer>) -> Void

    init(_ onDatagram: @escaping (AddressedEnvelope<ByteBuffer>) -> Void) {
        self.onDatagram = onDatagram
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        onDatagram(unwrapInboundIn(data))
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        // ICMP errors surface as read errors on UDP sockets (ECONNREFUSED): not fatal for the socket.
    }
}
