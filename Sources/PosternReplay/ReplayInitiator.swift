import Foundation
import NIOCore
import NIOPosix
import PosternCapture

/// The public side of a stream-mode replay (`postern replay CAPTURE --to ADDR`): for each replayable
/// flow, in capture order, announces it on the control connection (see `ReplayResponder`), opens
/// the connection (or UDP socket) to the forward and plays the flow's initiator, several flows at
/// once. At the end it collects the responder's checks and returns the whole report.
public final class ReplayInitiator: @unchecked Sendable {
    // All mutable state is touched on the one event loop only.
    let summary: CaptureSummary
    let capture: String
    let target: SocketAddress
    let datagramTarget: SocketAddress
    let control: SocketAddress
    let mode: ReplayPacing.Mode
    let timeout: TimeAmount
    let parallel: Int
    let progress: ((String) -> Void)?
    private let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    private let loop: EventLoop
    private let finished: EventLoopPromise<ReplayReport>

    private var controlChannel: Channel?
    private var controlAttempts = 0
    private var helloAnswered = false
    /// The report or the failure was given: nothing more happens.
    private var over = false
    static let maxControlAttempts = 5
    private var pacing: ReplayPacing
    private var queue: [Flow]
    private var pairing: (flow: Int, timer: Scheduled<Void>)?
    private var connecting: [Int: Channel] = [:]
    private var running = 0
    private var waitingForResults = false
    private var waitTimer: Scheduled<Void>?
    private var mine: [Int: SideResult] = [:]
    private var theirs: [Int: SideResult] = [:]
    /// Flows announced that the responder never saw (no ACCEPTED): their connection was ended by the
    /// forward or the mediator before it reached the LAN side, or nothing of them arrived in time.
    private var unreached: [Int: String] = [:]
    /// The UDP flows running, to end one the responder never saw.
    private var runners: [Int: DatagramFlowRunner] = [:]
    /// How long a flow whose own side already ended (reset by the forward) waits for its ACCEPTED:
    /// a recorded refused flow is accepted and reset at once by the responder, and the reset may
    /// arrive here before the control line does.
    static let acceptedGrace: TimeAmount = .seconds(2)
    /// How long a UDP flow's first datagram may take to reach the responder.
    static let datagramPairingWait: TimeAmount = .seconds(3)
    static let resetByForward =
        "the connection never reached it: the forward ended it first "
        + "(a destination the mediator's --allow denies, or a mediator that is not connected, shows this way)"
    private var total: Int
    private var progressTimer: RepeatedTask?

    public init(
        summary: CaptureSummary, capture: String, target: SocketAddress, datagramTarget: SocketAddress, control: SocketAddress,
        mode: ReplayPacing.Mode, timeout: TimeAmount, parallel: Int, progress: ((String) -> Void)?
    ) {
        self.summary = summary
        self.capture = capture
        self.target = target
        self.datagramTarget = datagramTarget
        self.control = control
        self.mode = mode
        self.timeout = timeout
        self.parallel = max(1, parallel)
        self.progress = progress
        self.loop = group.next()
        self.finished = loop.makePromise()
        self.queue = summary.flows.filter { ReplayReport.skipReason($0) == nil }
        self.total = queue.count
        self.pacing = ReplayPacing(mode: mode, captureStart: summary.flows.first?.startTime ?? 0, replayStart: .now())
    }

    /// Runs the replay to its end and returns the report; throws when the control connection fails.
    public func run() async throws -> ReplayReport {
        loop.execute { self.connectControl() }
        do {
            let report = try await finished.futureResult.get()
            try? await group.shutdownGracefully()
            return report
        } catch {
            try? await group.shutdownGracefully()
            throw error
        }
    }

    private func fail(_ why: String) {
        guard !over else { return }
        over = true
        progressTimer?.cancel()
        waitTimer?.cancel()
        var partial: ReplayReport?
        if helloAnswered && !mine.isEmpty {
            // What was replayed before the replay stopped is still worth reporting: the flows that
            // did not finish say so instead of leaving the user with one line of error.
            var initiatorSide = mine
            var responderSide = theirs
            for flow in summary.flows where ReplayReport.skipReason(flow) == nil {
                if initiatorSide[flow.number] == nil {
                    initiatorSide[flow.number] = SideResult(
                        flow: flow.number, check: nil, milliseconds: 0, problem: "not finished: the replay stopped")
                }
                if responderSide[flow.number] == nil {
                    responderSide[flow.number] = SideResult(
                        flow: flow.number, check: nil, milliseconds: 0, problem: "no result: the control connection ended")
                }
            }
            partial = ReplayReport.assemble(
                capture: capture, mode: "\(mode)", flows: summary.flows, initiatorSide: initiatorSide, responderSide: responderSide)
        }
        finished.fail(ReplayFailure(reason: why, partial: partial))
        controlChannel?.close(promise: nil)
    }

    // MARK: - Control

    private func connectControl() {
        guard total > 0 else {
            return finished.succeed(
                ReplayReport.assemble(capture: capture, mode: "\(mode)", flows: summary.flows, initiatorSide: [:], responderSide: [:]))
        }
        controlAttempts += 1
        let lines = ControlLines()
        lines.onLine = { [self] line in self.line(line) }
        lines.onClose = { [self] why in
            guard !over else { return }
            // Through a forward the connect itself always succeeds; a LAN side not (yet) listening
            // shows as a reset before any answer. Try again a few times before giving up.
            if !helloAnswered && controlAttempts < Self.maxControlAttempts {
                _ = loop.scheduleTask(in: .seconds(1)) { [self] in connectControl() }
            } else if helloAnswered {
                fail(
                    "\(why) (control \(Self.text(control))) after \(mine.count) of \(total) flows: "
                        + "the tunnel, its forward or the responder went away")
            } else {
                fail("\(why) (control \(Self.text(control)))")
            }
        }
        ClientBootstrap(group: loop)
            .connectTimeout(.seconds(10))
            .channelInitializer { channel in channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(lines) }
            }
            .connect(to: control)
            .whenComplete { [self] result in
                switch result {
                case .success(let channel):
                    controlChannel = channel
                    ControlLines.send("HELLO \(summary.digest)", on: channel)
                case .failure(let error):
                    if controlAttempts < Self.maxControlAttempts {
                        _ = loop.scheduleTask(in: .seconds(1)) { [self] in connectControl() }
                    } else {
                        fail("cannot reach the responder's control address \(Self.text(control)): \(Self.connectText(error))")
                    }
                }
            }
    }

    /// ADDR:PORT as the user wrote it (NIO's description reads `[IPv4]203.0.113.10/203.0.113.10:8001`).
    static func text(_ address: SocketAddress) -> String {
        guard let ip = address.ipAddress, let port = address.port else { return "\(address)" }
        return ip.contains(":") ? "[\(ip)]:\(port)" : "\(ip):\(port)"
    }

    /// The errno under a connect's error, if it has one.
    static func errnoCode(_ error: Error) -> Int32? {
        if let e = error as? NIOConnectionError, let first = e.connectionErrors.first { return errnoCode(first.error) }
        return (error as? IOError)?.errnoCode
    }

    /// Why a connect failed, in the words of strerror(3), not NIO's nested error descriptions.
    static func connectText(_ error: Error) -> String {
        if let e = error as? NIOConnectionError, let first = e.connectionErrors.first { return connectText(first.error) }
        if let e = error as? IOError { return String(cString: strerror(e.errnoCode)) }
        if let e = error as? ChannelError, case .connectTimeout(let t) = e { return "no answer within \(t.nanoseconds / 1_000_000_000) s" }
        return "\(error)"
    }

    private func line(_ line: String) {
        let words = line.split(separator: " ", maxSplits: 1).map(String.init)
        switch words.first {
        case "OK":
            helloAnswered = true
            pacing = ReplayPacing(mode: mode, captureStart: summary.flows.first?.startTime ?? 0, replayStart: .now())
            if progress != nil {
                progressTimer = loop.scheduleRepeatedTask(initialDelay: .seconds(2), delay: .seconds(2)) { [self] _ in
                    progress?("replay: \(mine.count)/\(total) flows done, \(running) running")
                }
            }
            pump()
        case "READY":
            guard let pairing, words.count == 2, words[1] == String(pairing.flow) else { return fail("control: unexpected '\(line)'") }
            open(pairing.flow)
        case "ACCEPTED":
            guard let pairing, words.count == 2, words[1] == String(pairing.flow) else { return fail("control: unexpected '\(line)'") }
            pairing.timer.cancel()
            self.pairing = nil
            pump()
        case "RESULT":
            guard words.count == 2, let result = try? JSONDecoder().decode(SideResult.self, from: Data(words[1].utf8)) else {
                return fail("control: unreadable result")
            }
            // Only flows this side replayed: a forged responder cannot grow the table.
            guard mine[result.flow] != nil || pairing?.flow == result.flow else {
                return fail("control: result for flow \(result.flow), which was not replayed")
            }
            theirs[result.flow] = result
        case "END":
            guard !over else { return }
            over = true
            for (number, why) in unreached where theirs[number] == nil {
                theirs[number] = SideResult(flow: number, check: nil, milliseconds: 0, problem: why)
            }
            waitTimer?.cancel()
            progressTimer?.cancel()
            let report = ReplayReport.assemble(
                capture: capture, mode: "\(mode)", flows: summary.flows, initiatorSide: mine, responderSide: theirs)
            finished.succeed(report)
            controlChannel?.close(promise: nil)
        case "ERR":
            helloAnswered = true
            fail("the responder says: \(words.count == 2 ? words[1] : "error")")
        default:
            fail("control: unexpected '\(line)'")
        }
    }

    // MARK: - Flows

    /// Starts the next flows: one announcement at a time, up to `parallel` running, each not before
    /// its recorded start (recorded timing).
    private func pump() {
        guard pairing == nil, let controlChannel else { return }
        if queue.isEmpty {
            if running == 0 && !waitingForResults {
                waitingForResults = true
                ControlLines.send("DONE", on: controlChannel)
                waitTimer = loop.scheduleTask(in: timeout + .seconds(5)) { [self] in fail("the responder sent no results") }
            }
            return
        }
        guard running < parallel else { return }
        if let deadline = pacing.deadline(for: queue[0].startTime) {
            _ = loop.scheduleTask(deadline: deadline) { [self] in pump() }
            return
        }
        let flow = queue.removeFirst()
        // A UDP flow's first datagram goes as soon as it is announced, and nothing tells this side
        // when the mediator drops it (its --allow): waiting all of --timeout for it would hold every
        // later flow back that long, so a UDP flow is paired for a few seconds at most.
        let wait = flow.transport == .udp ? min(timeout, Self.datagramPairingWait) : timeout
        let seconds = wait.nanoseconds / 1_000_000_000
        let timer = loop.scheduleTask(in: wait) { [self] in
            unreached[flow.number] =
                flow.transport == .tcp
                ? "the connection did not reach it within \(seconds) s (--timeout)"
                : "no datagram of it arrived within \(seconds) s: the mediator's --allow may deny its target, or the forward dropped them"
            giveUp(flow.number)
            runners.removeValue(forKey: flow.number)?.stop(problem: "given up: its datagrams did not reach the responder")
        }
        pairing = (flow.number, timer)
        running += 1
        ControlLines.send("NEXT \(flow.number)", on: controlChannel)
    }

    /// Announced but never seen on the other side: cancels it there and moves on.
    private func giveUp(_ number: Int) {
        guard pairing?.flow == number, let controlChannel else { return }
        pairing?.timer.cancel()
        pairing = nil
        ControlLines.send("CANCEL \(number)", on: controlChannel)
        connecting.removeValue(forKey: number)?.close(promise: nil)
        pump()
    }

    private func open(_ number: Int) {
        guard let flow = summary.flows.first(where: { $0.number == number }) else { return }
        let done: (DirectionCheck, Int, String?) -> Void = { [self] check, ms, problem in
            finish(number, SideResult(flow: number, check: check, milliseconds: ms, problem: problem))
        }
        switch flow.transport {
        case .tcp:
            let handler = StreamFlowHandler(flow: flow, side: .fromInitiator, pacing: pacing, timeout: timeout, onDone: done)
            ClientBootstrap(group: loop)
                .connectTimeout(.seconds(10))
                .channelOption(.allowRemoteHalfClosure, value: true)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(handler) }
                }
                .connect(to: target)
                .whenComplete { [self] result in
                    switch result {
                    case .success(let channel): connecting[number] = channel
                    case .failure(let error): connectFailed(flow, error)
                    }
                }
        case .udp:
            let box = RunnerBox()
            let target = datagramTarget
            DatagramBootstrap(group: loop)
                .channelOption(.recvAllocator, value: FixedSizeRecvByteBufferAllocator(capacity: 65_536))
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(
                            DatagramInbound { envelope in
                                var data = envelope.data
                                box.runner?.receive(data.readBytes(length: data.readableBytes) ?? [])
                            })
                    }
                }
                .bind(to: try! SocketAddress(ipAddress: target.protocol == .inet6 ? "::" : "0.0.0.0", port: 0))
                .whenComplete { [self] result in
                    switch result {
                    case .success(let channel):
                        connecting[number] = channel
                        let runner = DatagramFlowRunner(
                            flow: flow, side: .fromInitiator, pacing: pacing, timeout: timeout, eventLoop: loop,
                            send: { bytes in
                                var buffer = channel.allocator.buffer(capacity: bytes.count)
                                buffer.writeBytes(bytes)
                                channel.writeAndFlush(AddressedEnvelope(remoteAddress: target, data: buffer), promise: nil)
                            },
                            onDone: { check, ms, problem in
                                done(check, ms, problem)
                                // Late datagrams of the peer have nowhere to go once the flow is judged.
                                _ = channel.eventLoop.scheduleTask(in: .seconds(1)) { channel.close(promise: nil) }
                            })
                        box.runner = runner
                        runners[number] = runner
                        runner.start()
                    case .failure(let error):
                        connectFailed(flow, error)
                    }
                }
        case .icmp:
            break
        }
    }

    private func connectFailed(_ flow: Flow, _ error: Error) {
        // A refused connect is how a refused flow may show when nothing relays it; anything else is a
        // failure to replay.
        if Self.errnoCode(error) == ECONNREFUSED, flow.ending == .refused {
            let check = DirectionCheck.stream(flow, direction: .fromResponder, received: [], ending: "reset")
            finish(flow.number, SideResult(flow: flow.number, check: check, milliseconds: 0, problem: nil))
        } else {
            finish(
                flow.number,
                SideResult(
                    flow: flow.number, check: nil, milliseconds: 0,
                    problem: "cannot reach \(Self.text(flow.transport == .tcp ? target : datagramTarget)): \(Self.connectText(error))"))
        }
        if let pairing, pairing.flow == flow.number, let controlChannel {
            pairing.timer.cancel()
            self.pairing = nil
            // A reset while connecting is the forward's answer to a CONNECT the mediator refused,
            // arriving before the handshake completed here.
            if Self.errnoCode(error) == ECONNRESET {
                unreached[flow.number] = Self.resetByForward
            } else {
                unreached[flow.number] = "the connection never reached it: this side could not connect"
            }
            ControlLines.send("CANCEL \(flow.number)", on: controlChannel)
        }
        pump()
    }

    private func finish(_ number: Int, _ result: SideResult) {
        guard mine[number] == nil else { return }
        mine[number] = result
        connecting[number] = nil
        runners[number] = nil
        running -= 1
        if let pairing, pairing.flow == number {
            // This side is done, and the responder has not said it saw the connection: the forward
            // reset it (a CONNECT the mediator's policy denied, a target that refused, no mediator).
            // Waiting out --timeout would only delay every later flow by it.
            pairing.timer.cancel()
            let timer = loop.scheduleTask(in: Self.acceptedGrace) { [self] in
                unreached[number] = Self.resetByForward
                giveUp(number)
            }
            self.pairing = (number, timer)
        }
        pump()
    }
}

/// The replay could not run (the control connection failed, the responder refused).
public struct ReplayFailure: Error, CustomStringConvertible {
    public var reason: String
    /// The flows replayed before it stopped, when it stopped midway.
    public var partial: ReplayReport?
    public var description: String { reason }

    public init(reason: String, partial: ReplayReport? = nil) {
        self.reason = reason
        self.partial = partial
    }
}

/// The UDP flow's runner, made after its channel: the channel's handler finds it here.
final class RunnerBox {
    var runner: DatagramFlowRunner?
}
