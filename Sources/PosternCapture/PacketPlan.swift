import PosternWire

/// A capture read for replay in TUN mode: its IP packets as recorded (fragments as they are, not
/// reassembled), grouped into conversations by protocol and address pair, each with its initiator
/// (the sender of its first packet), its packets in capture order, and why it is not replayed, if it
/// is not. Both ends of a replay build the same plan from the same file, so they agree on what is sent
/// without talking.
public struct PacketPlan: Sendable {
    public struct Packet: Hashable, Sendable {
        public var number: Int
        public var direction: FlowDirection
        /// When it was recorded, nanoseconds since the epoch.
        public var time: Int64
        /// The IP packet as recorded, without link padding.
        public var bytes: [UInt8]
    }

    public struct Conversation: Hashable, Sendable {
        public var number: Int
        public var transport: Flow.Transport
        public var initiator: IPAddress
        public var responder: IPAddress
        public var packets: [Packet] = []
        public var skipReason: String?

        /// The conversation as a `Flow`, for the report (ports are 0: packets, not sockets).
        public var flow: Flow {
            Flow(
                number: number, transport: transport, initiator: Endpoint(initiator, 0), responder: Endpoint(responder, 0),
                firstPacket: packets.first?.number ?? 0, startTime: 0)
        }
    }

    /// A packet to send: rewritten to the lab's addresses, with the conversation it belongs to.
    public struct Planned: Hashable, Sendable {
        public var conversation: Int
        public var time: Int64
        public var bytes: [UInt8]
    }

    public private(set) var conversations: [Conversation] = []
    /// Frames that carry no IP, IP packets of other protocols, and undecodable ones.
    public private(set) var ignored = 0

    /// The tunnel devices' MTU: larger packets are not replayed, and SYNs arrive with their MSS
    /// clamped to it (`PacketComparison`).
    public let mtu: Int
    /// The IP version of the lab's addresses (`--rewrite`): conversations of the other are skipped.
    public let version: UInt8

    /// `mtu`: the largest packet the tunnel's devices carry; `hops`: routers between injection and
    /// capture (a packet whose TTL or hop limit would run out on the way is not replayed); `version`:
    /// the IP version the lab's addresses are of.
    public init(records: [CaptureRecord], mtu: Int, hops: Int, version: UInt8 = 4) {
        self.mtu = mtu
        self.version = version
        var index: [String: Int] = [:]
        for record in records {
            guard case .ip(let offset)? = try? record.linkType.payload(of: record.bytes),
                let ip = try? IPDatagram(frame: record.bytes, at: offset)
            else {
                ignored += 1
                continue
            }
            let transport: Flow.Transport
            switch ip.transportProtocol {
            case 1, 58: transport = .icmp
            case 6: transport = .tcp
            case 17: transport = .udp
            default:
                ignored += 1
                continue
            }
            // Neighbour discovery and multicast listener messages belong to one link: no router
            // forwards them (they would arrive with a hop limit below 255 and be dropped), so they
            // are not part of what is replayed between two hosts.
            if ip.transportProtocol == 58, let type = ip.payload.first, (130...137).contains(type) || type == 143 {
                ignored += 1
                continue
            }
            let pair = [ip.source.description, ip.destination.description].sorted()
            let key = "\(transport) \(pair[0]) \(pair[1])"
            let i: Int
            if let known = index[key] {
                i = known
            } else {
                conversations.append(
                    Conversation(number: conversations.count + 1, transport: transport, initiator: ip.source, responder: ip.destination))
                i = conversations.count - 1
                index[key] = i
            }
            let length: Int
            if ip.version == 4 {
                length = min(Int(record.bytes[offset + 2]) << 8 | Int(record.bytes[offset + 3]), record.bytes.count - offset)
            } else {
                length = min(40 + (Int(record.bytes[offset + 4]) << 8 | Int(record.bytes[offset + 5])), record.bytes.count - offset)
            }
            let direction: FlowDirection = conversations[i].initiator == ip.source ? .fromInitiator : .fromResponder
            let bytes = Array(record.bytes[offset..<(offset + length)])
            conversations[i].packets.append(Packet(number: record.number, direction: direction, time: record.time, bytes: bytes))
            if conversations[i].skipReason == nil {
                conversations[i].skipReason = Self.skipReason(
                    ip, bytes: bytes, transport: transport, record: record, mtu: mtu, hops: hops, version: version)
            }
        }
    }

    static func skipReason(
        _ ip: IPDatagram, bytes: [UInt8], transport: Flow.Transport, record: CaptureRecord, mtu: Int, hops: Int, version: UInt8
    ) -> String? {
        if ip.version != version {
            return "IPv\(ip.version): the lab's addresses (--rewrite) are IPv\(version); give IPv\(ip.version) ones to replay it"
        }
        if ip.source == ip.destination { return "a host talking to itself: there is no other side to replay it from" }
        let multicast = ip.version == 6 ? ip.destination.bytes[0] == 0xff : ip.destination.bytes[0] >= 224
        if multicast || ip.destination.bytes == [255, 255, 255, 255] {
            return "to a multicast or broadcast address: TUN mode relays unicast between two hosts"
        }
        if ip.isCut { return "packet \(record.number) cut short by the capture's snapshot length" }
        if bytes.count > mtu { return "packet \(record.number) of \(bytes.count) bytes is larger than the tunnel's MTU of \(mtu)" }
        let hopLimit = Int(bytes[ip.version == 6 ? 7 : 8])
        if hopLimit <= hops {
            return "packet \(record.number) has \(ip.version == 6 ? "hop limit" : "TTL") \(hopLimit): it would expire on the way"
        }
        return nil
    }

    /// The packets one side sends, in capture order, of the conversations that are replayed: the
    /// initiator's addresses become `initiator`, the responder's `responder` (in quoted headers too).
    public func packets(from direction: FlowDirection, initiator: IPAddress, responder: IPAddress) -> [Planned] {
        var out: [Planned] = []
        for conversation in conversations where conversation.skipReason == nil {
            let map = [conversation.initiator.bytes: initiator.bytes, conversation.responder.bytes: responder.bytes]
            for packet in conversation.packets where packet.direction == direction {
                guard let rewritten = PacketRewriter.rewrite(packet.bytes, map: map) else { continue }
                out.append(Planned(conversation: conversation.number, time: packet.time, bytes: rewritten))
            }
        }
        return out
    }

    /// Why `packets(from: direction, ...)` is empty, for the injecting end to say instead of a bare
    /// "sent 0 packets": no IP packet of TCP, UDP or ICMP in the capture, every conversation skipped
    /// (each with its reason, as the capturing end's report lists them), or none from that side.
    public func nothingToSend(from direction: FlowDirection) -> String {
        guard !conversations.isEmpty else {
            return "the capture holds no TCP, UDP or ICMP packet to replay (\(ignored) frames without one)"
        }
        let skipped = conversations.filter { $0.skipReason != nil }
        if skipped.count == conversations.count {
            let shown = skipped.prefix(5).map {
                "conversation \($0.number) (\($0.transport) \($0.initiator) ↔ \($0.responder)): \($0.skipReason!)"
            }
            let more = skipped.count > shown.count ? "; and \(skipped.count - shown.count) more" : ""
            return "every conversation is skipped: " + shown.joined(separator: "; ") + more
        }
        let side = direction == .fromInitiator ? "initiator" : "responder"
        return "the \(conversations.count - skipped.count) conversations replayed hold no packet from the \(side) that can be rewritten"
    }

    /// The report for one direction: what was planned against what was captured, per conversation.
    public func check(direction: FlowDirection, sent: [Planned], received: [[UInt8]], hops: Int, capture: String) -> (
        report: ReplayReport, unexpected: Int
    ) {
        let (outcomes, unexpected) = PacketComparison.match(expected: sent.map(\.bytes), received: received, hops: hops, mtu: mtu)
        var reports: [FlowReport] = []
        for conversation in conversations {
            if let reason = conversation.skipReason {
                reports.append(FlowReport(flow: conversation.flow, status: .skipped, reason: reason))
                continue
            }
            var expectedBytes = 0
            var receivedBytes = 0
            var delivered = 0
            var expectedPackets = 0
            var difference: Int?
            for (planned, outcome) in zip(sent, outcomes) where planned.conversation == conversation.number {
                expectedPackets += 1
                if let m = outcome.matched {
                    delivered += 1
                    receivedBytes += received[m].count
                } else if difference == nil {
                    // Offsets run over the conversation's packets of this direction, one after another.
                    difference = expectedBytes + (outcome.difference ?? 0)
                }
                expectedBytes += planned.bytes.count
            }
            let check = DirectionCheck(
                direction: direction, expectedPackets: expectedPackets, deliveredPackets: delivered, expectedBytes: expectedBytes,
                receivedBytes: receivedBytes, firstDifference: difference, expectedEnding: "none", observedEnding: "none")
            reports.append(FlowReport(flow: conversation.flow, status: check.ok ? .ok : .mismatch, directions: [check]))
        }
        return (ReplayReport(capture: capture, mode: "packets", flows: reports), unexpected.count)
    }
}
