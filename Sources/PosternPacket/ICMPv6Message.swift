import PosternWire

/// An ICMPv6 message as `ctl ping`/`ctl traceroute` meet it on the mediator for an IPv6 destination
/// (docs/protocol.md §11): echo requests it builds, and the echo replies and errors (destination
/// unreachable, packet too big, time exceeded) that come back. Pure: bytes in, values out.
///
/// No checksums here, unlike ICMPv4: the ICMPv6 checksum covers a pseudo-header with the source
/// address, which only the kernel knows when it sends, and an ICMPv6 socket (datagram or raw) fills
/// it in on sending and verifies it before delivering (RFC 3542 §3.1).
public enum ICMPv6Message: Hashable, Sendable {
    case echoRequest(identifier: UInt16, sequence: UInt16, payloadSize: Int)
    case echoReply(identifier: UInt16, sequence: UInt16, payloadSize: Int)
    /// An error and the echo request it quotes, if it quotes one. `info` is the 32-bit word after the
    /// checksum: the MTU for packet too big, the pointer for a parameter problem, else 0.
    case error(type: UInt8, code: UInt8, info: UInt32, quoted: ICMPMessage.QuotedEcho?)
    case other(type: UInt8, code: UInt8)

    public static let unreachableType: UInt8 = 1
    public static let packetTooBigType: UInt8 = 2
    public static let timeExceededType: UInt8 = 3
    public static let parameterProblemType: UInt8 = 4
    public static let echoRequestType: UInt8 = 128
    public static let echoReplyType: UInt8 = 129
    /// The ICMPv6 header: type, code, checksum, then identifier and sequence (or the error's word).
    public static let headerLength = 8
    /// The fixed IPv6 header an error quotes before the request's ICMPv6 header.
    static let ipv6HeaderLength = 40
    /// IPv6 next header value of ICMPv6.
    static let nextHeaderICMPv6: UInt8 = 58

    /// An echo request with `payload` and a zero checksum for the kernel to fill in.
    public static func echoRequest(identifier: UInt16, sequence: UInt16, payload: [UInt8]) -> [UInt8] {
        [echoRequestType, 0, 0, 0, UInt8(identifier >> 8), UInt8(identifier & 0xff), UInt8(sequence >> 8), UInt8(sequence & 0xff)]
            + payload
    }

    /// Parses an ICMPv6 message from its type byte on, as an ICMPv6 socket delivers it (never with
    /// the IPv6 header, raw or not).
    public init(parsing bytes: [UInt8]) throws(ICMPMessage.ParseError) {
        guard bytes.count >= Self.headerLength else { throw .tooShort(bytes.count) }
        let type = bytes[0]
        let code = bytes[1]
        func u16(_ i: Int) -> UInt16 { UInt16(bytes[i]) << 8 | UInt16(bytes[i + 1]) }
        switch type {
        case Self.echoRequestType:
            self = .echoRequest(identifier: u16(4), sequence: u16(6), payloadSize: bytes.count - Self.headerLength)
        case Self.echoReplyType:
            self = .echoReply(identifier: u16(4), sequence: u16(6), payloadSize: bytes.count - Self.headerLength)
        case Self.unreachableType, Self.packetTooBigType, Self.timeExceededType, Self.parameterProblemType:
            let info = UInt32(u16(4)) << 16 | UInt32(u16(6))
            self = .error(type: type, code: code, info: info, quoted: Self.quotedEcho(Array(bytes[Self.headerLength...])))
        default:
            self = .other(type: type, code: code)
        }
    }

    /// The echo request inside an error's body: a fixed IPv6 header whose next header is ICMPv6 (an
    /// echo request from this host carries no extension headers) and at least the request's first 8
    /// bytes. nil for anything else.
    static func quotedEcho(_ body: [UInt8]) -> ICMPMessage.QuotedEcho? {
        let h = ipv6HeaderLength
        guard body.count >= h + headerLength, body[0] >> 4 == 6, body[6] == nextHeaderICMPv6, body[h] == echoRequestType,
            let destination = IPAddress(bytes: body[24..<40])
        else { return nil }
        return ICMPMessage.QuotedEcho(
            destination: destination, identifier: UInt16(body[h + 4]) << 8 | UInt16(body[h + 5]),
            sequence: UInt16(body[h + 6]) << 8 | UInt16(body[h + 7]))
    }

    /// Whether this message answers the echo request `sequence` (with `identifier` when the sender
    /// chose it: a raw socket; nil for a datagram socket, where the kernel owns it and delivers only
    /// this socket's answers) sent to `destination`, and how. Packet too big counts as unreachable:
    /// the request could not get there at its size. nil: not an answer to it.
    public func outcome(
        forEchoTo destination: IPAddress, identifier: UInt16?, sequence: UInt16, from: IPAddress
    ) -> Frame.EchoReply.Outcome? {
        switch self {
        case .echoReply(let id, let seq, _):
            guard seq == sequence, identifier.map({ $0 == id }) ?? true, from == destination else { return nil }
            return .reply
        case .error(let type, _, _, let quoted?):
            guard quoted.sequence == sequence, identifier.map({ $0 == quoted.identifier }) ?? true,
                quoted.destination == destination
            else { return nil }
            return Self.outcome(ofErrorType: type)
        case .error, .echoRequest, .other:
            return nil
        }
    }

    /// The outcome an ICMPv6 error of `type` means for an echo request (also for errors a datagram
    /// socket's error queue reports); nil for types that do not answer one.
    public static func outcome(ofErrorType type: UInt8) -> Frame.EchoReply.Outcome? {
        switch type {
        case timeExceededType: return .timeExceeded
        case unreachableType, packetTooBigType: return .unreachable
        default: return nil
        }
    }
}
