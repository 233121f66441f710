import Glibc
import PosternCapture
import PosternPcap
import PosternWire

/// Replay in TUN mode (`postern replay --packets`): one side's packets of a capture, rewritten to the
/// lab's addresses, are injected with a raw socket on one host (`inject`), and a live capture on the
/// other host (`capture`) takes what the tunnel delivered and holds it against the same plan. The two
/// ends build the plan from the same file and options, so they need no control connection: the
/// capture side is started first and says when it listens.
public struct PacketReplay: Sendable {
    public let plan: PacketPlan
    public let capture: String
    public let direction: FlowDirection
    public let initiator: IPAddress
    public let responder: IPAddress
    public let hops: Int

    public init(plan: PacketPlan, capture: String, direction: FlowDirection, initiator: IPAddress, responder: IPAddress, hops: Int) {
        self.plan = plan
        self.capture = capture
        self.direction = direction
        self.initiator = initiator
        self.responder = responder
        self.hops = hops
    }

    public var planned: [PacketPlan.Planned] { plan.packets(from: direction, initiator: initiator, responder: responder) }

    /// Sends the planned packets (on `interface`, or routed: see `PacketInjector`), `gap` seconds apart (or at the capture's own intervals times `scale`
    /// when `recorded`); returns how many went out.
    public func inject(on interface: String?, gap: Double, recorded scale: Double?) throws(PacketInjector.Failure) -> Int {
        let injector = try PacketInjector(interface: interface)
        var previous: Int64?
        var count = 0
        for packet in planned {
            var wait = gap
            if let scale, let previous { wait = max(0, Double(packet.time - previous) / 1e9 * scale) }
            if previous != nil && wait > 0 { Self.sleep(wait) }
            previous = packet.time
            try injector.send(packet.bytes)
            count += 1
        }
        return count
    }

    /// Listens on `interface` for the packets of this direction, until all have come or `timeout`
    /// seconds pass (and `settle` more seconds, to see anything extra), and checks them. `ready` is
    /// called once the capture runs.
    public func capture(interface: String, timeout: Double, settle: Double, ready: (String) -> Void) throws(PcapLiveCapture.Failure) -> (
        report: ReplayReport, unexpected: Int
    ) {
        let sent = planned
        let (from, to) = direction == .fromInitiator ? (initiator, responder) : (responder, initiator)
        let family = from.isIPv6 ? "ip6" : "ip"
        let live = try PcapLiveCapture(interface: interface, filter: "\(family) and src host \(from) and dst host \(to)")
        ready("replay capture: listening on \(interface) (\(live.linkType)) for \(sent.count) packets from \(from) to \(to)")
        let start = PcapLiveCapture.now()
        // `stop` is asked after each packet: with nothing to wait for, only the settling time is spent.
        var records = sent.isEmpty ? [] : try live.collect(until: start + timeout) { $0.count >= sent.count }
        records += try live.collect(until: PcapLiveCapture.now() + settle) { _ in false }
        let received = records.compactMap(Self.ipPacket)
        return plan.check(direction: direction, sent: sent, received: received, hops: hops, capture: capture)
    }

    /// The IP packet (IPv4 or IPv6) a captured frame holds, without link padding; nil for anything else.
    static func ipPacket(_ record: CaptureRecord) -> [UInt8]? {
        guard case .ip(let offset)? = try? record.linkType.payload(of: record.bytes), record.bytes.count > offset else { return nil }
        let bytes = record.bytes
        switch bytes[offset] >> 4 {
        case 4 where bytes.count >= offset + 20:
            let total = Int(bytes[offset + 2]) << 8 | Int(bytes[offset + 3])
            return Array(bytes[offset..<min(bytes.count, offset + max(total, 20))])
        case 6 where bytes.count >= offset + 40:
            let total = 40 + (Int(bytes[offset + 4]) << 8 | Int(bytes[offset + 5]))
            return Array(bytes[offset..<min(bytes.count, offset + total)])
        default:
            return nil
        }
    }

    static func sleep(_ seconds: Double) {
        var ts = timespec(tv_sec: Int(seconds), tv_nsec: Int((seconds - Double(Int(seconds))) * 1e9))
        var left = timespec()
        while nanosleep(&ts, &left) != 0 && errno == EINTR { ts = left }
    }
}
