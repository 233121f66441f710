import PosternWire

/// One IP packet from a capture, read as far as the transport: addresses, the transport protocol after
/// any IPv6 extension headers, the fragment it is (if it is one) and the transport bytes. Every length
/// is checked against the bytes there are, so garbage is an error, never a crash.
public struct IPDatagram: Hashable, Sendable {
    public var version: UInt8
    public var source: IPAddress
    public var destination: IPAddress
    /// The transport protocol (6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6), after IPv6 extension headers.
    public var transportProtocol: UInt8
    /// Where this packet sits in a fragmented datagram; nil for a whole one.
    public var fragment: Fragment?
    /// The bytes after the IP headers (for a fragment: this fragment's share).
    public var payload: ArraySlice<UInt8>
    /// The capture kept fewer bytes than the header announces: the payload is cut short.
    public var isCut: Bool

    public struct Fragment: Hashable, Sendable {
        /// The IPv4 identification or the IPv6 fragment header's identification.
        public var identification: UInt32
        /// Byte offset of this fragment's payload in the datagram's payload.
        public var offset: Int
        public var moreFollow: Bool
    }

    public struct ParseError: Error, Hashable, Sendable, CustomStringConvertible {
        public var reason: String
        public var description: String { reason }
    }

    /// Parses the IP packet that starts at `start` of `frame`. `frame` may hold link padding after
    /// the packet (Ethernet's minimum size): the header's length decides.
    public init(frame: [UInt8], at start: Int) throws(ParseError) {
        let have = frame.count - start
        guard have >= 1 else { throw ParseError(reason: "no IP header") }
        func be16(_ at: Int) -> Int { Int(frame[at]) << 8 | Int(frame[at + 1]) }
        func be32(_ at: Int) -> UInt32 {
            UInt32(frame[at]) << 24 | UInt32(frame[at + 1]) << 16 | UInt32(frame[at + 2]) << 8 | UInt32(frame[at + 3])
        }
        version = frame[start] >> 4
        switch version {
        case 4:
            guard have >= 20 else { throw ParseError(reason: "IPv4 header cut short: \(have) of 20 bytes") }
            let header = Int(frame[start] & 0x0f) * 4
            guard header >= 20 else { throw ParseError(reason: "IPv4 header length \(header) is below 20") }
            guard have >= header else { throw ParseError(reason: "IPv4 header cut short: \(have) of \(header) bytes") }
            let total = be16(start + 2)
            guard total >= header else { throw ParseError(reason: "IPv4 total length \(total) is below its header's \(header)") }
            transportProtocol = frame[start + 9]
            source = IPAddress(bytes: frame[(start + 12)..<(start + 16)])!
            destination = IPAddress(bytes: frame[(start + 16)..<(start + 20)])!
            let flagsOffset = be16(start + 6)
            let more = flagsOffset & 0x2000 != 0
            let offset = (flagsOffset & 0x1fff) * 8
            fragment = (more || offset != 0) ? Fragment(identification: UInt32(be16(start + 4)), offset: offset, moreFollow: more) : nil
            let end = start + min(total, have)
            isCut = have < total
            payload = frame[(start + header)..<end]
        case 6:
            guard have >= 40 else { throw ParseError(reason: "IPv6 header cut short: \(have) of 40 bytes") }
            let total = 40 + be16(start + 4)
            source = IPAddress(bytes: frame[(start + 8)..<(start + 24)])!
            destination = IPAddress(bytes: frame[(start + 24)..<(start + 40)])!
            isCut = have < total
            let end = start + min(total, have)
            var next = frame[start + 6]
            var at = start + 40
            var found: Fragment?
            // Extension headers: hop-by-hop 0, routing 43, fragment 44, destination options 60, AH 51,
            // mobility 135, HIP 139, shim6 140. Each is checked against the packet's end.
            walk: while true {
                switch next {
                case 0, 43, 60, 135, 139, 140:
                    guard end - at >= 8 else { throw ParseError(reason: "IPv6 extension header \(next) cut short") }
                    let length = (Int(frame[at + 1]) + 1) * 8
                    guard end - at >= length else { throw ParseError(reason: "IPv6 extension header \(next) of \(length) bytes cut short") }
                    next = frame[at]
                    at += length
                case 51:
                    guard end - at >= 8 else { throw ParseError(reason: "IPv6 authentication header cut short") }
                    let length = (Int(frame[at + 1]) + 2) * 4
                    guard end - at >= length else { throw ParseError(reason: "IPv6 authentication header of \(length) bytes cut short") }
                    next = frame[at]
                    at += length
                case 44:
                    guard end - at >= 8 else { throw ParseError(reason: "IPv6 fragment header cut short") }
                    let offsetFlags = be16(at + 2)
                    found = Fragment(identification: be32(at + 4), offset: offsetFlags & 0xfff8, moreFollow: offsetFlags & 1 != 0)
                    next = frame[at]
                    at += 8
                    // An atomic fragment (offset 0, no more) is a whole datagram (RFC 6946).
                    if found!.offset == 0 && !found!.moreFollow { found = nil }
                    // Later headers of a non-first fragment are not in this packet.
                    if let f = found, f.offset != 0 { break walk }
                default:
                    break walk
                }
            }
            transportProtocol = next
            fragment = found
            payload = frame[at..<end]
        default:
            throw ParseError(reason: "IP version \(version) is neither 4 nor 6")
        }
    }
}
