/// One step of a side's part in a replayed flow, derived from the flow's events in capture order: a
/// side sends what it sent in the capture and, before its next move, waits for what the capture shows
/// it had received by then. Both sides follow the same capture order, so neither waits for the other
/// in a circle.
public enum ReplayStep: Hashable, Sendable {
    /// Send these bytes (TCP) or this datagram (UDP); `time` is the capture's, for recorded timing.
    case send([UInt8], time: Int64)
    /// Wait until the peer's stream has reached this many bytes (TCP) or datagrams (UDP) in all.
    case expect(Int)
    /// End the sending direction with FIN (TCP half-close).
    case finish(time: Int64)
    /// Abort the connection with RST.
    case reset(time: Int64)

    /// The steps of the side that sends `direction`'s events. TCP data that follow each other from
    /// one side become one send; each UDP datagram stays its own.
    public static func script(for flow: Flow, side direction: FlowDirection) -> [ReplayStep] {
        var steps: [ReplayStep] = []
        var received = 0
        for event in flow.events {
            if event.direction == direction {
                switch event.kind {
                case .data(let bytes):
                    if case .send(let previous, let time) = steps.last {
                        steps[steps.count - 1] = .send(previous + bytes, time: time)
                    } else {
                        steps.append(.send(bytes, time: event.time))
                    }
                case .datagram(let bytes): steps.append(.send(bytes, time: event.time))
                case .fin: steps.append(.finish(time: event.time))
                case .reset: steps.append(.reset(time: event.time))
                }
            } else {
                switch event.kind {
                case .data(let bytes): received += bytes.count
                case .datagram: received += 1
                case .fin, .reset: continue
                }
                if case .expect = steps.last {
                    steps[steps.count - 1] = .expect(received)
                } else {
                    steps.append(.expect(received))
                }
            }
        }
        return steps
    }
}
