import PosternWire

/// Splits a capture into flows, one packet at a time: TCP connections by handshake (a SYN after a
/// finished connection on the same addresses starts a new one), UDP conversations by address pair,
/// ICMP echo exchanges by identifier and other ICMP messages by address pair. Nothing is guessed:
/// a flow whose beginning, end or bytes are not all in the capture says so in `incomplete`.
public struct CaptureFlows: Sendable {
    public private(set) var flows: [Flow] = []
    public private(set) var packets = 0
    /// Frames that carry no IP (ARP, LLDP, ...).
    public private(set) var notIP = 0
    /// IP packets of other transports (ESP, GRE, SCTP, ...).
    public private(set) var otherTransport = 0
    /// Packets that could not be read, with the reason ("packet 12: TCP header cut short ...").
    public private(set) var undecodable: [String] = []
    private var reassembler = FragmentReassembler()
    private var current: [FlowKey: Int] = [:]
    private var tcp: [Int: TCPState] = [:]

    struct FlowKey: Hashable, Sendable {
        var transport: Flow.Transport
        var low: Endpoint
        var high: Endpoint
        var discriminator: UInt32

        init(_ transport: Flow.Transport, _ a: Endpoint, _ b: Endpoint, _ discriminator: UInt32 = 0) {
            self.transport = transport
            let aFirst = (a.description, a.port) < (b.description, b.port)
            low = aFirst ? a : b
            high = aFirst ? b : a
            self.discriminator = discriminator
        }
    }

    struct TCPState: Sendable {
        var streams: [FlowDirection: TCPDirectionStream] = [.fromInitiator: .init(), .fromResponder: .init()]
        var synSeen = false
        var synAckSeen = false
        var finished = false
        var dataSeen = false
        var cut = false
    }

    /// At most this many undecodable packets are described (the rest are counted).
    public static let maxDescribed = 50
    public private(set) var undecodableCount = 0

    public init() {}

    /// Adds the capture's next packet.
    public mutating func add(_ record: CaptureRecord) {
        packets += 1
        do {
            guard case .ip(let offset) = try record.linkType.payload(of: record.bytes) else {
                notIP += 1
                return
            }
            let datagram = try IPDatagram(frame: record.bytes, at: offset)
            guard let whole = reassembler.add(datagram, packet: record.number) else { return }
            try add(whole, record: record)
        } catch let error as LinkType.FrameError {
            note(record.number, error.reason)
        } catch let error as IPDatagram.ParseError {
            note(record.number, error.reason)
        } catch {
            note(record.number, "\(error)")
        }
    }

    private mutating func note(_ packet: Int, _ reason: String) {
        undecodableCount += 1
        if undecodable.count < Self.maxDescribed { undecodable.append("packet \(packet): \(reason)") }
    }

    private mutating func add(_ ip: IPDatagram, record: CaptureRecord) throws(IPDatagram.ParseError) {
        switch ip.transportProtocol {
        case 6:
            let segment = try TCPSegment(parsing: ip.payload)
            addTCP(segment, ip: ip, record: record)
        case 17:
            let udp = try UDPHeader(parsing: ip.payload)
            let from = Endpoint(ip.source, udp.sourcePort)
            let to = Endpoint(ip.destination, udp.destinationPort)
            let index = flowIndex(FlowKey(.udp, from, to), transport: .udp, initiator: from, responder: to, record: record)
            let direction: FlowDirection = flows[index].initiator == from ? .fromInitiator : .fromResponder
            if udp.isCut || ip.isCut {
                markIncomplete(index, "datagram in packet \(record.number) cut short by the capture's snapshot length")
            }
            append(index, FlowEvent(time: record.time, direction: direction, kind: .datagram(Array(udp.payload)), packet: record.number))
        case 1, 58:
            addICMP(ip, record: record)
        default:
            otherTransport += 1
        }
    }

    private mutating func flowIndex(
        _ key: FlowKey, transport: Flow.Transport, initiator: Endpoint, responder: Endpoint, record: CaptureRecord, fresh: Bool = false
    ) -> Int {
        if !fresh, let index = current[key] { return index }
        let flow = Flow(
            number: flows.count + 1, transport: transport, initiator: initiator, responder: responder, firstPacket: record.number,
            startTime: record.time)
        flows.append(flow)
        current[key] = flows.count - 1
        return flows.count - 1
    }

    private mutating func append(_ index: Int, _ event: FlowEvent) {
        flows[index].events.append(event)
        flows[index].endTime = max(flows[index].endTime, event.time)
    }

    private mutating func markIncomplete(_ index: Int, _ reason: String) {
        if !flows[index].incomplete.contains(reason) { flows[index].incomplete.append(reason) }
    }

    private mutating func addTCP(_ segment: TCPSegment, ip: IPDatagram, record: CaptureRecord) {
        let from = Endpoint(ip.source, segment.sourcePort)
        let to = Endpoint(ip.destination, segment.destinationPort)
        let key = FlowKey(.tcp, from, to)
        let opening = segment.isSYN && !segment.isACK
        var index = current[key]
        if let existing = index, opening {
            let state = tcp[existing]!
            // A SYN after the connection finished, or with another initial sequence number than
            // the SYN before it, opens a new connection on the same addresses.
            let sameSYN = state.streams[.fromInitiator]!.firstSequence == segment.sequence &+ 1
            if state.finished || !state.synSeen || !sameSYN { index = nil }
        }
        if index == nil {
            // Whoever sends the SYN initiates; a SYN-ACK first means the SYN was missed; anything else
            // gives no way to tell, so the sender is taken and the flow is marked incomplete.
            let initiatorIsSender = !(segment.isSYN && segment.isACK)
            index = flowIndex(
                key, transport: .tcp, initiator: initiatorIsSender ? from : to, responder: initiatorIsSender ? to : from, record: record,
                fresh: true)
            tcp[index!] = TCPState()
        }
        let i = index!
        var state = tcp[i]!
        defer { tcp[i] = state }
        let direction: FlowDirection = flows[i].initiator == from ? .fromInitiator : .fromResponder
        flows[i].endTime = max(flows[i].endTime, record.time)
        if state.finished { return }
        if ip.isCut {
            state.cut = true
            markIncomplete(i, "packet \(record.number) cut short by the capture's snapshot length")
        }
        if segment.isSYN {
            state.streams[direction]!.start(synSequence: segment.sequence)
            if direction == .fromInitiator && !segment.isACK { state.synSeen = true }
            if direction == .fromResponder && segment.isACK { state.synAckSeen = true }
        }
        if segment.isRST {
            let refused = direction == .fromResponder && state.synSeen && !state.synAckSeen && !state.dataSeen
            flows[i].ending = refused ? .refused : .reset(by: direction)
            append(i, FlowEvent(time: record.time, direction: direction, kind: .reset, packet: record.number))
            state.finished = true
            return
        }
        if state.streams[direction]!.firstSequence == nil && segment.isSYN == false && segment.payload.isEmpty && !segment.isFIN { return }
        let sequence = segment.isSYN ? segment.sequence &+ 1 : segment.sequence
        let kinds = state.streams[direction]!.add(
            sequence: sequence, payload: segment.payload, fin: segment.isFIN, packet: record.number, time: record.time)
        for kind in kinds {
            if case .data = kind { state.dataSeen = true }
            append(i, FlowEvent(time: record.time, direction: direction, kind: kind, packet: record.number))
        }
        if state.streams[.fromInitiator]!.finDelivered && state.streams[.fromResponder]!.finDelivered {
            flows[i].ending = .closed
            state.finished = true
        }
    }

    private mutating func addICMP(_ ip: IPDatagram, record: CaptureRecord) {
        let message = ip.payload
        guard message.count >= 4 else {
            note(record.number, "ICMP message cut short: \(message.count) bytes")
            return
        }
        let type = message[message.startIndex]
        let v6 = ip.transportProtocol == 58
        let request: UInt8 = v6 ? 128 : 8
        let reply: UInt8 = v6 ? 129 : 0
        let from = Endpoint(ip.source, 0)
        let to = Endpoint(ip.destination, 0)
        let key: FlowKey
        let name: String
        if (type == request || type == reply) && message.count >= 8 {
            let id = UInt32(message[message.startIndex + 4]) << 8 | UInt32(message[message.startIndex + 5])
            key = FlowKey(.icmp, from, to, 0x1_0000 | id)
            name = "echo"
        } else {
            key = FlowKey(.icmp, from, to, 0x2_0000 | UInt32(type))
            name = Self.icmpName(type, v6: v6)
        }
        let isNew = current[key] == nil
        // The echo request's sender initiates, even when the reply is seen first.
        let initiator = (type == reply && isNew) ? to : from
        let index = flowIndex(key, transport: .icmp, initiator: initiator, responder: initiator == from ? to : from, record: record)
        if isNew { flows[index].summary = name }
        let direction: FlowDirection = flows[index].initiator == from ? .fromInitiator : .fromResponder
        if ip.isCut { markIncomplete(index, "message in packet \(record.number) cut short by the capture's snapshot length") }
        append(index, FlowEvent(time: record.time, direction: direction, kind: .datagram(Array(message)), packet: record.number))
    }

    static func icmpName(_ type: UInt8, v6: Bool) -> String {
        let names: [UInt8: String] =
            v6
            ? [
                1: "destination unreachable", 2: "packet too big", 3: "time exceeded", 4: "parameter problem", 133: "router solicitation",
                134: "router advertisement", 135: "neighbor solicitation", 136: "neighbor advertisement", 137: "redirect",
            ]
            : [
                3: "destination unreachable", 4: "source quench", 5: "redirect", 11: "time exceeded", 12: "parameter problem",
                13: "timestamp", 14: "timestamp reply",
            ]
        return names[type] ?? "type \(type)"
    }

    /// Ends the capture: flows that miss a beginning, bytes or an ending are marked incomplete.
    public mutating func finish() -> CaptureSummary {
        for (i, state) in tcp.sorted(by: { $0.key < $1.key }) {
            let flow = flows[i]
            flows[i].retransmissions = state.streams.values.reduce(0) { $0 + $1.retransmissions }
            flows[i].outOfOrder = state.streams.values.reduce(0) { $0 + $1.outOfOrder }
            if !state.synSeen {
                markIncomplete(i, "no SYN from the initiator: the capture starts inside the connection")
            } else if !state.synAckSeen && flow.ending != .refused {
                markIncomplete(i, "no SYN-ACK from the responder")
            }
            for direction in [FlowDirection.fromInitiator, .fromResponder] where state.streams[direction]!.hasGap {
                markIncomplete(i, "bytes from the \(direction) are missing after offset \(state.streams[direction]!.delivered)")
            }
            if flow.ending == .none { markIncomplete(i, "the capture ends before the connection does (no FIN both ways, no RST)") }
        }
        for piece in reassembler.incomplete {
            note(piece.packet, "fragmented datagram from \(piece.source) to \(piece.destination) never completed")
            // Later fragments carry no ports: every UDP flow between the two addresses may be the one
            // that lost a datagram, so none of them is taken for complete.
            guard piece.transportProtocol == 17 else { continue }
            for i in flows.indices where flows[i].transport == .udp {
                let f = flows[i]
                let forward =
                    f.initiator == Endpoint(piece.source, f.initiator.port) && f.responder == Endpoint(piece.destination, f.responder.port)
                let backward =
                    f.initiator == Endpoint(piece.destination, f.initiator.port) && f.responder == Endpoint(piece.source, f.responder.port)
                if forward || backward {
                    markIncomplete(i, "a fragmented datagram between its addresses never completed (packet \(piece.packet))")
                }
            }
        }
        return CaptureSummary(
            flows: flows, packets: packets, notIP: notIP, otherTransport: otherTransport, undecodable: undecodable,
            undecodableCount: undecodableCount)
    }
}
