import NIOCore
import NIOPosix
import PosternCapture

#if canImport(Glibc)
    import Glibc
#endif

/// Plays one side of a replayed TCP flow on one connection: runs the side's `ReplayStep`s (send,
/// wait for the peer's bytes, FIN, RST), collects what the peer sends and how its direction ends, and
/// reports a `DirectionCheck` once the recorded ending is seen, the connection is gone, or time is up.
final class StreamFlowHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    let flow: Flow
    let side: FlowDirection
    private let steps: [ReplayStep]
    private var next = 0
    private let pacing: ReplayPacing
    private let timeout: TimeAmount
    private var received: [UInt8] = []
    /// "fin", "reset", or why the connection ended otherwise ("closed", "timeout").
    private var ending: String?
    private var context: ChannelHandlerContext?
    private var timer: Scheduled<Void>?
    private var deadlineTimer: Scheduled<Void>?
    private var reported = false
    /// The RST step that already had its pause (fast mode's pause is counted from now, once).
    private var pausedBeforeReset = -1
    private var started: NIODeadline?
    private let onDone: (DirectionCheck, _ milliseconds: Int, _ problem: String?) -> Void

    init(
        flow: Flow, side: FlowDirection, pacing: ReplayPacing, timeout: TimeAmount, onDone: @escaping (DirectionCheck, Int, String?) -> Void
    ) {
        self.flow = flow
        self.side = side
        self.steps = ReplayStep.script(for: flow, side: side)
        self.pacing = pacing
        self.timeout = timeout
        self.onDone = onDone
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        if context.channel.isActive { start() }
    }

    /// The context holds this handler: kept, the pair outlived the flow's channel, so a replay kept
    /// every TCP flow it had run (as `TunnelSession` did every tunnel).
    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    func channelActive(context: ChannelHandlerContext) {
        start()
        context.fireChannelActive()
    }

    private func start() {
        guard started == nil, let context else { return }
        started = .now()
        deadlineTimer = context.eventLoop.scheduleTask(in: timeout) { [self] in
            if ending == nil { ending = "timeout" }
            finish(problem: "timed out after \(timeout.nanoseconds / 1_000_000_000) s")
        }
        advance()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = unwrapInboundIn(data)
        received += buffer.readBytes(length: buffer.readableBytes) ?? []
        advance()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let e = event as? ChannelEvent, e == .inputClosed {
            if ending == nil { ending = "fin" }
            advance()
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        if let io = error as? IOError, io.errnoCode == ECONNRESET || io.errnoCode == ECONNREFUSED || io.errnoCode == EPIPE {
            if ending == nil { ending = "reset" }
        } else if ending == nil {
            ending = "error: \(error)"
        }
        advance()
    }

    func channelInactive(context: ChannelHandlerContext) {
        // Gone with no error seen: the peer's FIN after ours (NIO then closes the whole channel instead
        // of telling `inputClosed`). An RST shows as ECONNRESET in `errorCaught` first; our own
        // closes set `ending` before they close.
        if ending == nil { ending = "fin" }
        advance()
        finish(problem: nil)
        context.fireChannelInactive()
    }

    /// Runs steps until one must wait (for bytes, for time) or the script is done.
    private func advance() {
        guard !reported, let context else { return }
        while next < steps.count {
            if timer != nil { return }
            switch steps[next] {
            case .send(let bytes, let time):
                if wait(until: pacing.deadline(for: time)) { return }
                var buffer = context.channel.allocator.buffer(capacity: bytes.count)
                buffer.writeBytes(bytes)
                context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
            case .expect(let count):
                if received.count < count {
                    // Nothing more will come: the rest of the script cannot run.
                    if ending != nil { return finish(problem: nil) }
                    return
                }
            case .finish(let time):
                if wait(until: pacing.deadline(for: time)) { return }
                context.close(mode: .output, promise: nil)
            case .reset(let time):
                if pausedBeforeReset != next {
                    pausedBeforeReset = next
                    let deadline = pacing.deadline(for: time) ?? (pacing.mode == .fast ? .now() + ReplayPacing.resetPause : nil)
                    if wait(until: deadline) { return }
                }
                next += 1
                if ending == nil { ending = "reset" }
                let channel = context.channel
                if let provider = channel as? SocketOptionProvider {
                    provider.setSoLinger(linger(l_onoff: 1, l_linger: 0)).whenComplete { _ in channel.close(promise: nil) }
                } else {
                    channel.close(promise: nil)
                }
                return finish(problem: nil)
            }
            next += 1
        }
        // Script done: what remains is the peer's ending.
        if ending != nil { finish(problem: nil) }
    }

    /// Schedules `advance` for a deadline in the future; false when the step may run now.
    private func wait(until deadline: NIODeadline?) -> Bool {
        guard let deadline, let context else { return false }
        timer = context.eventLoop.scheduleTask(deadline: deadline) { [self] in
            timer = nil
            advance()
        }
        return true
    }

    private func finish(problem: String?) {
        guard !reported else { return }
        reported = true
        timer?.cancel()
        deadlineTimer?.cancel()
        let check = DirectionCheck.stream(flow, direction: side.reversed, received: received, ending: ending ?? "none")
        let elapsed = started.map { Int((NIODeadline.now() - $0).nanoseconds / 1_000_000) } ?? 0
        // Close a little later, not now: a full close would drop writes still queued behind our FIN.
        if let context, context.channel.isActive {
            let channel = context.channel
            _ = context.eventLoop.scheduleTask(in: .seconds(1)) { channel.close(promise: nil) }
        }
        onDone(check, elapsed, problem)
    }
}
