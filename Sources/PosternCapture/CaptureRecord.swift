/// One packet as a capture file holds it: the link-layer frame, possibly cut short by the capture's
/// snapshot length.
public struct CaptureRecord: Hashable, Sendable {
    /// 1-based position in the file.
    public var number: Int
    /// Nanoseconds since the epoch (pcap micro- and nanosecond files and pcapng all fit).
    public var time: Int64
    public var linkType: LinkType
    /// The bytes captured: `originalLength` or fewer.
    public var bytes: [UInt8]
    /// The frame's length on the wire.
    public var originalLength: Int

    public init(number: Int, time: Int64, linkType: LinkType, bytes: [UInt8], originalLength: Int) {
        self.number = number
        self.time = time
        self.linkType = linkType
        self.bytes = bytes
        self.originalLength = originalLength
    }

    /// True when the capture kept less than the frame (a snapshot length below the frame size).
    public var isCut: Bool { bytes.count < originalLength }
}
