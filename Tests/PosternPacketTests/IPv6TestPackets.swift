import NIOCore
import PosternWire

/// IPv6 packets for the tests, built by hand with checksums computed by the plain sum here, not by
/// the code under test.
enum IPv6TestPackets {
    /// The ones' complement sum of RFC 1071 over `bytes`.
    static func sum(_ bytes: [UInt8]) -> UInt16 {
        var s: UInt32 = 0
        var i = 0
        while i < bytes.count {
            s += UInt32(bytes[i]) << 8 + (i + 1 < bytes.count ? UInt32(bytes[i + 1]) : 0)
            i += 2
        }
        while s > 0xffff { s = (s & 0xffff) + (s >> 16) }
        return ~UInt16(s)
    }

    /// The IPv6 pseudo-header of RFC 8200 §8.1.
    static func pseudo(_ src: [UInt8], _ dst: [UInt8], length: Int, next: UInt8) -> [UInt8] {
        src + dst + [
            UInt8(length >> 24 & 0xff), UInt8(length >> 16 & 0xff), UInt8(length >> 8 & 0xff), UInt8(length & 0xff), 0, 0, 0, next,
        ]
    }

    /// An IPv6 packet with `payload` after the fixed header.
    static func packet(_ src: String, _ dst: String, next: UInt8, payload: [UInt8], hopLimit: UInt8 = 64) -> [UInt8] {
        var b: [UInt8] = [0x60, 0, 0, 0, UInt8(payload.count >> 8), UInt8(payload.count & 0xff), next, hopLimit]
        b += IPAddress(src)!.bytes + IPAddress(dst)!.bytes
        return b + payload
    }

    /// An ICMPv6 echo request (type 128) of `size` data bytes with its checksum.
    static func echo(_ src: String, _ dst: String, size: Int) -> [UInt8] {
        var icmp: [UInt8] = [128, 0, 0, 0, 0x12, 0x34, 0, 1] + [UInt8](repeating: 0x5a, count: size)
        let s = sum(pseudo(IPAddress(src)!.bytes, IPAddress(dst)!.bytes, length: icmp.count, next: 58) + icmp)
        icmp[2] = UInt8(s >> 8)
        icmp[3] = UInt8(s & 0xff)
        return packet(src, dst, next: 58, payload: icmp)
    }

    /// A TCP segment with `options`, `flags` and a correct checksum.
    static func tcp(_ src: String, _ dst: String, flags: UInt8 = 0x02, options: [UInt8], payload: [UInt8] = []) -> [UInt8] {
        var tcp: [UInt8] = [
            0x9c, 0x40, 0x00, 0x50, 1, 2, 3, 4, 0, 0, 0, 0, UInt8((20 + options.count) / 4) << 4, flags, 0xff, 0xff, 0, 0, 0, 0,
        ]
        tcp += options + payload
        let s = sum(pseudo(IPAddress(src)!.bytes, IPAddress(dst)!.bytes, length: tcp.count, next: 6) + tcp)
        tcp[16] = UInt8(s >> 8)
        tcp[17] = UInt8(s & 0xff)
        return packet(src, dst, next: 6, payload: tcp)
    }

    /// Whether the upper-layer checksum of an IPv6 packet (no extension headers) verifies.
    static func upperLayerVerifies(_ b: [UInt8]) -> Bool {
        let length = b.count - 40
        return sum(pseudo(Array(b[8..<24]), Array(b[24..<40]), length: length, next: b[6]) + Array(b[40...])) == 0
    }
}
