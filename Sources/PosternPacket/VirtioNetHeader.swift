import NIOCore

/// The header a tun device opened with `IFF_VNET_HDR` puts before every packet it hands over, and
/// expects before every packet written to it (`struct virtio_net_hdr` of linux/virtio_net.h, 10 bytes
/// in the host's byte order, little-endian on every CPU Postern runs on). It is what lets the kernel
/// pass a TCP or UDP "super-packet" of up to 64 KB through the device in one read or write, to be cut
/// into MTU-sized segments later (GSO), and leave a checksum for the other side to finish
/// (`needsChecksum`): wireguard-go's and Tailscale's way to multi-Gbit/s on a tun device.
///
/// Pure: parsing checks only the header's own bytes; whether its lengths fit the packet behind it is
/// `GSOSegmenter`'s job, since a header that lies must never crash anything.
public struct VirtioNetHeader: Hashable, Sendable {
    /// Bytes of the header on the wire (the legacy layout, without `num_buffers`: the tun default).
    public static let size = 10

    /// `VIRTIO_NET_HDR_F_NEEDS_CSUM`: the transport checksum at `checksumStart + checksumOffset` holds
    /// only the pseudo-header's sum; the bytes from `checksumStart` on are still to be added.
    public static let needsChecksum: UInt8 = 1
    /// `VIRTIO_NET_HDR_F_DATA_VALID`: the kernel checked the checksum already.
    public static let dataValid: UInt8 = 2

    /// `gso_type`: which segmentation the packet still needs.
    public enum GSOType: UInt8, Hashable, Sendable {
        /// A single packet.
        case none = 0
        /// TCP over IPv4 (TSO4).
        case tcpV4 = 1
        /// UDP fragmentation offload (UFO); never asked for, refused if it comes.
        case udp = 3
        /// TCP over IPv6 (TSO6).
        case tcpV6 = 4
        /// UDP segmentation (USO), IPv4 or IPv6: one UDP header per segment.
        case udpL4 = 5
    }

    /// `VIRTIO_NET_HDR_GSO_ECN`: the segments carry ECN's CWR; only sent when TSO_ECN was offered.
    public static let gsoECNBit: UInt8 = 0x80

    public var flags: UInt8
    /// The raw `gso_type`, ECN bit included; `gso` names it.
    public var gsoTypeRaw: UInt8
    /// Bytes of the IP and transport headers (a hint: Linux does not always fill it exactly).
    public var headerLength: UInt16
    /// Payload bytes per segment (the MSS for TCP).
    public var gsoSize: UInt16
    public var checksumStart: UInt16
    public var checksumOffset: UInt16

    public init(
        flags: UInt8 = 0, gso: GSOType = .none, headerLength: UInt16 = 0, gsoSize: UInt16 = 0, checksumStart: UInt16 = 0,
        checksumOffset: UInt16 = 0
    ) {
        self.flags = flags
        self.gsoTypeRaw = gso.rawValue
        self.headerLength = headerLength
        self.gsoSize = gsoSize
        self.checksumStart = checksumStart
        self.checksumOffset = checksumOffset
    }

    /// A header that asks for nothing: a whole packet whose checksums are complete.
    public static let plain = VirtioNetHeader()

    /// The segmentation asked for, or nil for a type this code does not know (dropped by the caller).
    public var gso: GSOType? { GSOType(rawValue: gsoTypeRaw & ~Self.gsoECNBit) }

    /// Reads the header at `offset` of `buffer`; nil when fewer than `size` bytes are there.
    public init?(_ buffer: ByteBuffer, at offset: Int) {
        guard offset >= buffer.readerIndex, offset + Self.size <= buffer.writerIndex,
            let flags = buffer.getInteger(at: offset, as: UInt8.self),
            let type = buffer.getInteger(at: offset + 1, as: UInt8.self),
            let headerLength = buffer.getInteger(at: offset + 2, endianness: .little, as: UInt16.self),
            let gsoSize = buffer.getInteger(at: offset + 4, endianness: .little, as: UInt16.self),
            let start = buffer.getInteger(at: offset + 6, endianness: .little, as: UInt16.self),
            let checksumOffset = buffer.getInteger(at: offset + 8, endianness: .little, as: UInt16.self)
        else { return nil }
        self.flags = flags
        self.gsoTypeRaw = type
        self.headerLength = headerLength
        self.gsoSize = gsoSize
        self.checksumStart = start
        self.checksumOffset = checksumOffset
    }

    /// Appends the header's 10 bytes to `buffer`.
    public func write(to buffer: inout ByteBuffer) {
        buffer.writeInteger(flags)
        buffer.writeInteger(gsoTypeRaw)
        buffer.writeInteger(headerLength, endianness: .little)
        buffer.writeInteger(gsoSize, endianness: .little)
        buffer.writeInteger(checksumStart, endianness: .little)
        buffer.writeInteger(checksumOffset, endianness: .little)
    }

    /// The header's bytes, for a gather write in front of a packet.
    public var bytes: [UInt8] {
        var buffer = ByteBuffer()
        buffer.reserveCapacity(Self.size)
        write(to: &buffer)
        return buffer.readBytes(length: Self.size)!
    }
}
