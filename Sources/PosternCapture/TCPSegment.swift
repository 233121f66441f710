/// A TCP header and its payload, read from an IP datagram's payload.
public struct TCPSegment: Hashable, Sendable {
    public var sourcePort: UInt16
    public var destinationPort: UInt16
    public var sequence: UInt32
    public var acknowledgement: UInt32
    public var flags: UInt8
    public var payload: ArraySlice<UInt8>

    public static let fin: UInt8 = 0x01
    public static let syn: UInt8 = 0x02
    public static let rst: UInt8 = 0x04
    public static let ack: UInt8 = 0x10

    public var isSYN: Bool { flags & Self.syn != 0 }
    public var isACK: Bool { flags & Self.ack != 0 }
    public var isFIN: Bool { flags & Self.fin != 0 }
    public var isRST: Bool { flags & Self.rst != 0 }

    public init(parsing bytes: ArraySlice<UInt8>) throws(IPDatagram.ParseError) {
        let s = bytes.startIndex
        guard bytes.count >= 20 else { throw IPDatagram.ParseError(reason: "TCP header cut short: \(bytes.count) of 20 bytes") }
        func be16(_ at: Int) -> UInt16 { UInt16(bytes[s + at]) << 8 | UInt16(bytes[s + at + 1]) }
        func be32(_ at: Int) -> UInt32 { UInt32(be16(at)) << 16 | UInt32(be16(at + 2)) }
        let header = Int(bytes[s + 12] >> 4) * 4
        guard header >= 20 else { throw IPDatagram.ParseError(reason: "TCP header length \(header) is below 20") }
        guard bytes.count >= header else { throw IPDatagram.ParseError(reason: "TCP header cut short: \(bytes.count) of \(header) bytes") }
        sourcePort = be16(0)
        destinationPort = be16(2)
        sequence = be32(4)
        acknowledgement = be32(8)
        flags = bytes[s + 13]
        payload = bytes.dropFirst(header)
    }
}
