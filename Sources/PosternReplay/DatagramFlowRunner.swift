import NIOCore
import PosternCapture

/// Plays one side of a replayed UDP flow: sends the side's datagrams in capture order, each after the
/// peer's datagrams the capture shows before it, and collects the peer's. Done when every recorded
/// datagram of the peer arrived and the script ran, or at the timeout (a lost datagram).
final class DatagramFlowRunner {
    let flow: Flow
    let side: FlowDirection
    private let steps: [ReplayStep]
    private var next = 0
    private let pacing: ReplayPacing
    private let eventLoop: EventLoop
    private let send: ([UInt8]) -> Void
    private var received: [[UInt8]] = []
    private let expected: Int
    private var timer: Scheduled<Void>?
    private var deadlineTimer: Scheduled<Void>?
    private var started: NIODeadline?
    private var reported = false
    private let timeout: TimeAmount
    private let onDone: (DirectionCheck, Int, String?) -> Void

    init(
        flow: Flow, side: FlowDirection, pacing: ReplayPacing, timeout: TimeAmount, eventLoop: EventLoop, send: @escaping ([UInt8]) -> Void,
        onDone: @escaping (DirectionCheck, Int, String?) -> Void
    ) {
        self.flow = flow
        self.side = side
        self.steps = ReplayStep.script(for: flow, side: side)
        self.expected = flow.packets(from: side.reversed)
        self.pacing = pacing
        self.timeout = timeout
        self.eventLoop = eventLoop
        self.send = send
        self.onDone = onDone
    }

    func start() {
        guard started == nil else { return }
        started = .now()
        deadlineTimer = eventLoop.scheduleTask(in: timeout) { [self] in
            finish(problem: "timed out after \(timeout.nanoseconds / 1_000_000_000) s with \(received.count) of \(expected) datagrams")
        }
        advance()
    }

    func receive(_ datagram: [UInt8]) {
        guard !reported else { return }
        received.append(datagram)
        advance()
    }

    private func advance() {
        guard !reported, started != nil else { return }
        while next < steps.count {
            if timer != nil { return }
            switch steps[next] {
            case .send(let bytes, let time):
                if let deadline = pacing.deadline(for: time) {
                    timer = eventLoop.scheduleTask(deadline: deadline) { [self] in
                        timer = nil
                        advance()
                    }
                    return
                }
                send(bytes)
            case .expect(let count):
                if received.count < count { return }
            case .finish, .reset:
                break
            }
            next += 1
        }
        // More than recorded can only be a fault; extra datagrams still get counted until then.
        if received.count >= expected { finish(problem: nil) }
    }

    /// Ends the flow now, as it stands (the replay gave it up).
    func stop(problem: String) {
        finish(problem: problem)
    }

    private func finish(problem: String?) {
        guard !reported else { return }
        reported = true
        timer?.cancel()
        deadlineTimer?.cancel()
        let check = DirectionCheck.datagrams(flow, direction: side.reversed, received: received)
        let elapsed = started.map { Int((NIODeadline.now() - $0).nanoseconds / 1_000_000) } ?? 0
        onDone(check, elapsed, problem)
    }
}
