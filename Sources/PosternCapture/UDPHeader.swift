/// A UDP header and its payload, read from an IP datagram's payload (the whole datagram, after
/// reassembly).
public struct UDPHeader: Hashable, Sendable {
    public var sourcePort: UInt16
    public var destinationPort: UInt16
    public var payload: ArraySlice<UInt8>
    /// The UDP length field says more than the capture kept.
    public var isCut: Bool

    public init(parsing bytes: ArraySlice<UInt8>) throws(IPDatagram.ParseError) {
        let s = bytes.startIndex
        guard bytes.count >= 8 else { throw IPDatagram.ParseError(reason: "UDP header cut short: \(bytes.count) of 8 bytes") }
        sourcePort = UInt16(bytes[s]) << 8 | UInt16(bytes[s + 1])
        destinationPort = UInt16(bytes[s + 2]) << 8 | UInt16(bytes[s + 3])
        let length = Int(bytes[s + 4]) << 8 | Int(bytes[s + 5])
        // Length 0 is legal for IPv6 jumbograms only; take the IP payload then.
        if length == 0 {
            payload = bytes.dropFirst(8)
            isCut = false
        } else {
            guard length >= 8 else { throw IPDatagram.ParseError(reason: "UDP length \(length) is below 8") }
            isCut = bytes.count < length
            payload = bytes[(s + 8)..<(s + min(length, bytes.count))]
        }
    }
}
