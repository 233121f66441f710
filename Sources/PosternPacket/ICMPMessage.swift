import NIOCore
import PosternWire

/// An ICMPv4 message as `ctl ping`/`ctl traceroute` meet it on the mediator (docs/protocol.md §11):
/// echo requests it builds, and the echo replies and errors that come back, with their checksums.
/// Pure: bytes in, values out.
public enum ICMPMessage: Hashable, Sendable {
    case echoRequest(identifier: UInt16, sequence: UInt16, payloadSize: Int)
    case echoReply(identifier: UInt16, sequence: UInt16, payloadSize: Int)
    /// An error (destination unreachable, time exceeded, ...) and the echo request it quotes, if it
    /// quotes one.
    case error(type: UInt8, code: UInt8, quoted: QuotedEcho?)
    case other(type: UInt8, code: UInt8)

    public static let echoReplyType: UInt8 = 0
    public static let unreachableType: UInt8 = 3
    public static let echoRequestType: UInt8 = 8
    public static let timeExceededType: UInt8 = 11
    /// Types whose body quotes the datagram that caused them (RFC 792).
    static let errorTypes: Set<UInt8> = [unreachableType, 4, 5, timeExceededType, 12]
    /// The ICMP header: type, code, checksum, then identifier and sequence (or 4 unused bytes).
    public static let headerLength = 8

    /// The echo request an ICMP error quotes: where it went and its identifier and sequence.
    public struct QuotedEcho: Hashable, Sendable {
        public var destination: IPAddress
        public var identifier: UInt16
        public var sequence: UInt16
        public init(destination: IPAddress, identifier: UInt16, sequence: UInt16) {
            self.destination = destination
            self.identifier = identifier
            self.sequence = sequence
        }
    }

    public enum ParseError: Error, Hashable, Sendable, CustomStringConvertible {
        case tooShort(Int)
        case badChecksum
        case notIPv4ICMP
        public var description: String {
            switch self {
            case .tooShort(let n): return "\(n) bytes is too short for ICMP"
            case .badChecksum: return "bad ICMP checksum"
            case .notIPv4ICMP: return "not an IPv4 ICMP packet"
            }
        }
    }

    /// An echo request with `payload`, its checksum filled in.
    public static func echoRequest(identifier: UInt16, sequence: UInt16, payload: [UInt8]) -> [UInt8] {
        var bytes: [UInt8] = [echoRequestType, 0, 0, 0]
        bytes += [UInt8(identifier >> 8), UInt8(identifier & 0xff), UInt8(sequence >> 8), UInt8(sequence & 0xff)]
        bytes += payload
        let sum = checksum(bytes)
        bytes[2] = UInt8(sum >> 8)
        bytes[3] = UInt8(sum & 0xff)
        return bytes
    }

    /// The Internet checksum of `bytes` (0 over a message that carries its own correct checksum).
    public static func checksum(_ bytes: [UInt8]) -> UInt16 {
        let buffer = ByteBuffer(bytes: bytes)
        return InternetChecksum.compute(buffer, at: buffer.readerIndex, length: bytes.count)
    }

    /// Parses an ICMP message (from its type byte on, as an ICMP datagram socket delivers it).
    /// `verifyChecksum` false for what the kernel hands back from the error queue (our own request).
    public init(parsing bytes: [UInt8], verifyChecksum: Bool = true) throws(ParseError) {
        guard bytes.count >= Self.headerLength else { throw .tooShort(bytes.count) }
        if verifyChecksum && Self.checksum(bytes) != 0 { throw .badChecksum }
        let type = bytes[0]
        let code = bytes[1]
        func u16(_ i: Int) -> UInt16 { UInt16(bytes[i]) << 8 | UInt16(bytes[i + 1]) }
        switch type {
        case Self.echoRequestType:
            self = .echoRequest(identifier: u16(4), sequence: u16(6), payloadSize: bytes.count - Self.headerLength)
        case Self.echoReplyType:
            self = .echoReply(identifier: u16(4), sequence: u16(6), payloadSize: bytes.count - Self.headerLength)
        case _ where Self.errorTypes.contains(type):
            self = .error(type: type, code: code, quoted: Self.quotedEcho(Array(bytes[Self.headerLength...])))
        default:
            self = .other(type: type, code: code)
        }
    }

    /// The echo request inside an error's body: an IPv4 header (protocol ICMP) and at least the first
    /// 8 bytes of the request. nil for anything else.
    static func quotedEcho(_ body: [UInt8]) -> QuotedEcho? {
        guard body.count >= 20, body[0] >> 4 == 4, body[9] == 1 else { return nil }
        let headerLength = Int(body[0] & 0x0f) * 4
        guard headerLength >= 20, body.count >= headerLength + Self.headerLength else { return nil }
        let icmp = body[headerLength...]
        let i = icmp.startIndex
        guard icmp[i] == echoRequestType else { return nil }
        let destination = IPAddress.v4(
            UInt32(body[16]) << 24 | UInt32(body[17]) << 16 | UInt32(body[18]) << 8 | UInt32(body[19]))
        return QuotedEcho(
            destination: destination, identifier: UInt16(icmp[i + 4]) << 8 | UInt16(icmp[i + 5]),
            sequence: UInt16(icmp[i + 6]) << 8 | UInt16(icmp[i + 7]))
    }

    /// Parses a whole IPv4 packet carrying ICMP, as a raw socket delivers it: the sender, the TTL it
    /// arrived with and the message. The IPv4 header checksum is checked too.
    public static func parseIPv4(_ packet: [UInt8]) throws(ParseError) -> (source: IPAddress, ttl: UInt8, message: ICMPMessage) {
        guard packet.count >= 20, packet[0] >> 4 == 4 else { throw .notIPv4ICMP }
        let headerLength = Int(packet[0] & 0x0f) * 4
        guard headerLength >= 20, packet.count >= headerLength, packet[9] == 1 else { throw .notIPv4ICMP }
        guard checksum(Array(packet[0..<headerLength])) == 0 else { throw .badChecksum }
        let source = IPAddress.v4(UInt32(packet[12]) << 24 | UInt32(packet[13]) << 16 | UInt32(packet[14]) << 8 | UInt32(packet[15]))
        let message = try ICMPMessage(parsing: Array(packet[headerLength...]))
        return (source, packet[8], message)
    }

    /// Whether this message answers the echo request `sequence` (with `identifier`, when the sender
    /// chose it: a raw socket; nil for a datagram socket, where the kernel owns it and delivers only
    /// this socket's answers) sent to `destination`, and how. nil: not an answer to it (someone
    /// else's reply, a redirect, our own request looped back...).
    public func outcome(
        forEchoTo destination: IPAddress, identifier: UInt16?, sequence: UInt16, from: IPAddress
    ) -> Frame.EchoReply.Outcome? {
        switch self {
        case .echoReply(let id, let seq, _):
            guard seq == sequence, identifier.map({ $0 == id }) ?? true, from == destination else { return nil }
            return .reply
        case .error(let type, _, let quoted?):
            guard quoted.sequence == sequence, identifier.map({ $0 == quoted.identifier }) ?? true,
                quoted.destination == destination
            else { return nil }
            switch type {
            case Self.timeExceededType: return .timeExceeded
            case Self.unreachableType: return .unreachable
            default: return nil
            }
        case .error, .echoRequest, .other:
            return nil
        }
    }
}
