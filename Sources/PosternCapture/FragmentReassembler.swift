import PosternWire

/// Puts fragmented IP datagrams back together (IPv4 and IPv6 alike), by source, destination, protocol
/// and identification. Overlapping fragments keep the bytes that arrived first. Bounded: at most
/// `maxPending` datagrams wait at once (the oldest is dropped) and none grows past 65,535 bytes.
public struct FragmentReassembler: Sendable {
    struct Key: Hashable, Sendable {
        var source: IPAddress
        var destination: IPAddress
        var transportProtocol: UInt8
        var identification: UInt32
    }

    struct Pending: Sendable {
        var pieces: [Int: ArraySlice<UInt8>] = [:]
        /// Known once the last fragment (no more-follow flag) arrived.
        var totalLength: Int?
        var firstPacket: Int
        var isCut = false
    }

    private var pending: [Key: Pending] = [:]
    private var order: [Key] = []
    public let maxPending: Int
    /// Datagrams dropped for the limit, or found impossible (longer than 65,535 bytes).
    public private(set) var discarded = 0

    public init(maxPending: Int = 1024) {
        self.maxPending = maxPending
    }

    /// Adds a fragment; returns the whole datagram (with the first fragment's header fields and no
    /// fragment) once every byte is there.
    public mutating func add(_ datagram: IPDatagram, packet: Int) -> IPDatagram? {
        guard let fragment = datagram.fragment else { return datagram }
        let key = Key(
            source: datagram.source, destination: datagram.destination, transportProtocol: datagram.transportProtocol,
            identification: fragment.identification)
        var entry = pending[key] ?? Pending(firstPacket: packet)
        if pending[key] == nil {
            order.append(key)
            if order.count > maxPending {
                pending[order.removeFirst()] = nil
                discarded += 1
            }
        }
        guard fragment.offset + datagram.payload.count <= 65_535 else {
            pending[key] = nil
            discarded += 1
            return nil
        }
        entry.isCut = entry.isCut || datagram.isCut
        if entry.pieces[fragment.offset] == nil || entry.pieces[fragment.offset]!.count < datagram.payload.count {
            entry.pieces[fragment.offset] = datagram.payload
        }
        if !fragment.moreFollow { entry.totalLength = fragment.offset + datagram.payload.count }
        guard let total = entry.totalLength, let whole = Self.join(entry.pieces, total: total) else {
            pending[key] = entry
            return nil
        }
        pending[key] = nil
        order.removeAll { $0 == key }
        var result = datagram
        result.fragment = nil
        result.payload = whole[...]
        result.isCut = entry.isCut
        return result
    }

    /// Fragmented datagrams still missing pieces, with the packet number of their first fragment.
    public var incomplete: [(packet: Int, source: IPAddress, destination: IPAddress, transportProtocol: UInt8)] {
        order.compactMap { key in pending[key].map { ($0.firstPacket, key.source, key.destination, key.transportProtocol) } }
    }

    /// The payload if the pieces cover 0..<total without a hole; the earliest piece wins on overlap.
    static func join(_ pieces: [Int: ArraySlice<UInt8>], total: Int) -> [UInt8]? {
        var result: [UInt8] = []
        result.reserveCapacity(total)
        for (offset, bytes) in pieces.sorted(by: { $0.key < $1.key }) {
            guard offset <= result.count else { return nil }
            let skip = result.count - offset
            if skip < bytes.count { result.append(contentsOf: bytes.dropFirst(skip)) }
        }
        guard result.count >= total else { return nil }
        return Array(result.prefix(total))
    }
}
