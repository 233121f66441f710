import PosternWire

/// Makes IP packets (raw IP, checksums filled in) for traffic known only as streams and datagrams: what
/// a forward carried, written to a pcap file that tcpdump and Wireshark open. A TCP connection gets a
/// handshake, data segments of at most `segmentSize` bytes with running sequence numbers, FIN and RST;
/// a UDP datagram one packet. Both addresses of a connection must be of one family.
public struct PacketSynthesizer: Sendable {
    public let client: Endpoint
    public let server: Endpoint
    private let clientAddress: IPAddress
    private let serverAddress: IPAddress
    private var clientSequence: UInt32 = 1_000
    private var serverSequence: UInt32 = 5_000
    public static let segmentSize = 1_460
    /// The largest UDP payload one IP packet holds.
    public static let maxDatagram = 65_507

    /// nil when an endpoint is not an IP address or the families differ.
    public init?(client: Endpoint, server: Endpoint) {
        guard case .ip(let mappedC) = client.host, case .ip(let mappedS) = server.host else { return nil }
        let c = mappedC.normalized
        let s = mappedS.normalized
        guard c.isIPv6 == s.isIPv6 else { return nil }
        self.client = client
        self.server = server
        clientAddress = c
        serverAddress = s
    }

    private func ends(_ direction: FlowDirection) -> (IPAddress, UInt16, IPAddress, UInt16) {
        direction == .fromInitiator
            ? (clientAddress, client.port, serverAddress, server.port) : (serverAddress, server.port, clientAddress, client.port)
    }

    /// SYN, SYN-ACK, ACK.
    public mutating func open() -> [[UInt8]] {
        let syn = tcp(.fromInitiator, flags: 0x02, sequence: clientSequence &- 1, ack: 0)
        let synAck = tcp(.fromResponder, flags: 0x12, sequence: serverSequence &- 1, ack: clientSequence)
        let ack = tcp(.fromInitiator, flags: 0x10, sequence: clientSequence, ack: serverSequence)
        return [syn, synAck, ack]
    }

    /// Data from one side, in segments.
    public mutating func data(from direction: FlowDirection, _ bytes: [UInt8]) -> [[UInt8]] {
        var packets: [[UInt8]] = []
        var at = 0
        while at < bytes.count {
            let piece = Array(bytes[at..<min(bytes.count, at + Self.segmentSize)])
            if direction == .fromInitiator {
                packets.append(tcp(direction, flags: 0x18, sequence: clientSequence, ack: serverSequence, piece))
                clientSequence &+= UInt32(piece.count)
            } else {
                packets.append(tcp(direction, flags: 0x18, sequence: serverSequence, ack: clientSequence, piece))
                serverSequence &+= UInt32(piece.count)
            }
            at += piece.count
        }
        return packets
    }

    public mutating func fin(from direction: FlowDirection) -> [UInt8] {
        defer {
            if direction == .fromInitiator { clientSequence &+= 1 } else { serverSequence &+= 1 }
        }
        return direction == .fromInitiator
            ? tcp(direction, flags: 0x11, sequence: clientSequence, ack: serverSequence)
            : tcp(direction, flags: 0x11, sequence: serverSequence, ack: clientSequence)
    }

    public func reset(from direction: FlowDirection) -> [UInt8] {
        direction == .fromInitiator
            ? tcp(direction, flags: 0x14, sequence: clientSequence, ack: serverSequence)
            : tcp(direction, flags: 0x14, sequence: serverSequence, ack: clientSequence)
    }

    /// One UDP datagram (payloads past `maxDatagram` are cut to it).
    public func datagram(from direction: FlowDirection, _ payload: [UInt8]) -> [UInt8] {
        let (src, sport, dst, dport) = ends(direction)
        let body = payload.count > Self.maxDatagram ? Array(payload.prefix(Self.maxDatagram)) : payload
        var udp = Self.be16(Int(sport)) + Self.be16(Int(dport)) + Self.be16(8 + body.count) + [0, 0] + body
        var sum = Self.checksum(Self.pseudoHeader(src, dst, 17, udp.count) + udp)
        if sum == 0 { sum = 0xffff }
        udp[6] = UInt8(sum >> 8)
        udp[7] = UInt8(sum & 0xff)
        return Self.ip(src, dst, 17, udp)
    }

    private func tcp(_ direction: FlowDirection, flags: UInt8, sequence: UInt32, ack: UInt32, _ payload: [UInt8] = []) -> [UInt8] {
        let (src, sport, dst, dport) = ends(direction)
        var segment =
            Self.be16(Int(sport)) + Self.be16(Int(dport)) + Self.be32(sequence) + Self.be32(ack)
            + [0x50, flags] + Self.be16(65_535) + [0, 0, 0, 0] + payload
        let sum = Self.checksum(Self.pseudoHeader(src, dst, 6, segment.count) + segment)
        segment[16] = UInt8(sum >> 8)
        segment[17] = UInt8(sum & 0xff)
        return Self.ip(src, dst, 6, segment)
    }

    static func ip(_ src: IPAddress, _ dst: IPAddress, _ proto: UInt8, _ payload: [UInt8]) -> [UInt8] {
        if src.isIPv6 {
            return [0x60, 0, 0, 0] + be16(payload.count) + [proto, 64] + src.bytes + dst.bytes + payload
        }
        var header = [0x45, 0] + be16(20 + payload.count) + [0, 0, 0x40, 0, 64, proto, 0, 0] + src.bytes + dst.bytes
        let sum = checksum(header)
        header[10] = UInt8(sum >> 8)
        header[11] = UInt8(sum & 0xff)
        return header + payload
    }

    static func pseudoHeader(_ src: IPAddress, _ dst: IPAddress, _ proto: UInt8, _ length: Int) -> [UInt8] {
        src.isIPv6
            ? src.bytes + dst.bytes + be32(UInt32(length)) + [0, 0, 0, proto]
            : src.bytes + dst.bytes + [0, proto] + be16(length)
    }

    /// The Internet checksum (RFC 1071) of the bytes.
    public static func checksum(_ bytes: [UInt8]) -> UInt16 {
        var sum: UInt32 = 0
        var i = 0
        while i + 1 < bytes.count {
            sum &+= UInt32(bytes[i]) << 8 | UInt32(bytes[i + 1])
            i += 2
        }
        if i < bytes.count { sum &+= UInt32(bytes[i]) << 8 }
        while sum >> 16 != 0 { sum = (sum & 0xffff) &+ (sum >> 16) }
        return ~UInt16(sum)
    }

    static func be16(_ v: Int) -> [UInt8] { [UInt8(truncatingIfNeeded: v >> 8), UInt8(truncatingIfNeeded: v)] }
    static func be32(_ v: UInt32) -> [UInt8] {
        [UInt8(v >> 24), UInt8(truncatingIfNeeded: v >> 16), UInt8(truncatingIfNeeded: v >> 8), UInt8(truncatingIfNeeded: v)]
    }
}
