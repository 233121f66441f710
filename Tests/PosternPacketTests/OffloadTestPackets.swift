import NIOCore
import PosternPacket

/// Builds TCP and UDP packets over IPv4 and IPv6 with correct checksums (computed by the byte-wise
/// `InternetChecksum.compute`, not by the code under test), for the offload tests.
enum OffloadTestPackets {
    static let src4: [UInt8] = [192, 168, 77, 10]
    static let dst4: [UInt8] = [10, 77, 0, 2]
    static let src6: [UInt8] = [0x20, 0x01, 0x0d, 0xb8] + [UInt8](repeating: 0, count: 11) + [1]
    static let dst6: [UInt8] = [0x20, 0x01, 0x0d, 0xb8] + [UInt8](repeating: 0, count: 11) + [2]

    struct TCP {
        var v6 = false
        var sport: UInt16 = 40_000
        var dport: UInt16 = 5201
        var seq: UInt32 = 1000
        var ack: UInt32 = 77
        var flags: UInt8 = 0x10
        var window: UInt16 = 502
        var options: [UInt8] = []
        var payload: [UInt8] = []
        var id: UInt16 = 100
        var ttl: UInt8 = 64
        var tos: UInt8 = 0
        var fragment: UInt16 = 0x4000  // DF
        var ipOptions: [UInt8] = []
        var source: [UInt8]? = nil
    }

    static func tcp(_ t: TCP) -> ByteBuffer {
        var seg: [UInt8] = []
        seg += be16(t.sport) + be16(t.dport) + be32(t.seq) + be32(t.ack)
        seg += [UInt8((20 + t.options.count) / 4) << 4, t.flags] + be16(t.window) + [0, 0, 0, 0]
        seg += t.options + t.payload
        return ip(
            v6: t.v6, proto: 6, transport: seg, checksumAt: 16, id: t.id, ttl: t.ttl, tos: t.tos, fragment: t.fragment,
            ipOptions: t.ipOptions, source: t.source)
    }

    static func udp(v6: Bool = false, payload: [UInt8], id: UInt16 = 100) -> ByteBuffer {
        let seg = be16(5353) + be16(53) + be16(UInt16(8 + payload.count)) + [0, 0] + payload
        return ip(v6: v6, proto: 17, transport: seg, checksumAt: 6, id: id, ttl: 64, tos: 0, fragment: 0, ipOptions: [], source: nil)
    }

    static func ip(
        v6: Bool, proto: UInt8, transport: [UInt8], checksumAt: Int, id: UInt16, ttl: UInt8, tos: UInt8, fragment: UInt16,
        ipOptions: [UInt8], source: [UInt8]?
    ) -> ByteBuffer {
        var transport = transport
        let s = source ?? (v6 ? src6 : src4)
        let d = v6 ? dst6 : dst4
        var pseudo = s + d
        pseudo += v6 ? be32(UInt32(transport.count)) + [0, 0, 0, proto] : [0, proto] + be16(UInt16(transport.count))
        var sum = checksumOf(pseudo + transport)
        if proto == 17, sum == 0 { sum = 0xffff }
        transport[checksumAt] = UInt8(sum >> 8)
        transport[checksumAt + 1] = UInt8(sum & 0xff)
        var header: [UInt8]
        if v6 {
            header = [0x60, 0, 0, 0] + be16(UInt16(transport.count)) + [proto, ttl] + s + d
        } else {
            let ihl = 5 + ipOptions.count / 4
            header = [UInt8(0x40 | ihl), tos] + be16(UInt16(ihl * 4 + transport.count)) + be16(id) + be16(fragment)
            header += [ttl, proto, 0, 0] + s + d + ipOptions
            let hc = checksumOf(header)
            header[10] = UInt8(hc >> 8)
            header[11] = UInt8(hc & 0xff)
        }
        return ByteBuffer(bytes: header + transport)
    }

    /// The reference checksum: byte-wise, from the existing code.
    static func checksumOf(_ bytes: [UInt8]) -> UInt16 {
        InternetChecksum.compute(ByteBuffer(bytes: bytes), at: 0, length: bytes.count)
    }

    /// Whether the IPv4 header checksum (if any) and the TCP/UDP checksum of `p` are right.
    static func checksumsValid(_ p: ByteBuffer) -> Bool {
        let bytes = Array(p.readableBytesView)
        let v6 = bytes[0] >> 4 == 6
        let ipHeader = v6 ? 40 : Int(bytes[0] & 0x0f) * 4
        if !v6, checksumOf(Array(bytes[0..<ipHeader])) != 0 { return false }
        let proto = v6 ? bytes[6] : bytes[9]
        let transport = Array(bytes[ipHeader...])
        var pseudo = v6 ? Array(bytes[8..<40]) : Array(bytes[12..<20])
        pseudo += v6 ? be32(UInt32(transport.count)) + [0, 0, 0, proto] : [0, proto] + be16(UInt16(transport.count))
        return checksumOf(pseudo + transport) == 0
    }

    /// `count` consecutive segments of one flow as a sender's TCP would emit them: `mss` bytes each
    /// (the last `last` bytes if given), sequence numbers and IPv4 identifications counting up.
    static func run(count: Int, mss: Int, last: Int? = nil, v6: Bool = false, options: [UInt8] = [], pushLast: Bool = false)
        -> [ByteBuffer]
    {
        var t = TCP(v6: v6, options: options)
        var out: [ByteBuffer] = []
        for i in 0..<count {
            let n = i == count - 1 ? (last ?? mss) : mss
            t.payload = (0..<n).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ i) }
            t.flags = (pushLast && i == count - 1) ? 0x18 : 0x10
            out.append(tcp(t))
            t.seq &+= UInt32(n)
            t.id &+= 1
        }
        return out
    }

    static func be16(_ v: UInt16) -> [UInt8] { [UInt8(v >> 8), UInt8(v & 0xff)] }
    static func be32(_ v: UInt32) -> [UInt8] { [UInt8(v >> 24), UInt8((v >> 16) & 0xff), UInt8((v >> 8) & 0xff), UInt8(v & 0xff)] }
}
