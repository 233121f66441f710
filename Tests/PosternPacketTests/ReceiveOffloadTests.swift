import NIOCore
import PosternPacket
import PosternWire
import XCTest

/// What a packet socket with PACKET_VNET_HDR hands over, made whole: checksums the sender left to
/// offload, TCP and UDP super-packets cut into segments with correct headers; and damaged headers
/// that give nothing instead of a crash.
final class ReceiveOffloadTests: XCTestCase {
    let ethernet: [UInt8] = [2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 0x0a, 0x08, 0x00]

    /// A virtio_net_hdr (little-endian fields).
    func header(flags: UInt8 = 0, gso: UInt8 = 0, size: UInt16 = 0, start: UInt16 = 0, offset: UInt16 = 0) -> [UInt8] {
        [
            flags, gso, 0, 0, UInt8(size & 0xff), UInt8(size >> 8), UInt8(start & 0xff), UInt8(start >> 8), UInt8(offset & 0xff),
            UInt8(offset >> 8),
        ]
    }

    /// An IPv4 TCP (or UDP) packet from 192.168.77.10 to 192.168.77.50 carrying `payload`, with a
    /// correct IP header checksum and the L4 checksum field left as given.
    func packet(tcp: Bool, payload: [UInt8], flags: UInt8 = 0x18, check: UInt16 = 0) -> [UInt8] {
        let l4: [UInt8] =
            tcp
            ? [
                0x1f, 0x90, 0xc3, 0x50, 0x00, 0x00, 0x10, 0x00, 0, 0, 0, 1, 0x50, flags, 0xff, 0xff, UInt8(check >> 8), UInt8(check & 0xff),
                0, 0,
            ]
            : [
                0x0f, 0xa0, 0x0f, 0xa1, UInt8((8 + payload.count) >> 8), UInt8((8 + payload.count) & 0xff), UInt8(check >> 8),
                UInt8(check & 0xff),
            ]
        let total = 20 + l4.count + payload.count
        var ip: [UInt8] = [0x45, 0, UInt8(total >> 8 & 0xff), UInt8(total & 0xff), 0x12, 0x34, 0x40, 0, 64, tcp ? 6 : 17, 0, 0]
        ip += [192, 168, 77, 10, 192, 168, 77, 50]
        let sum = InternetChecksum.compute(ByteBuffer(bytes: ip), at: 0, length: 20)
        ip[10] = UInt8(sum >> 8)
        ip[11] = UInt8(sum & 0xff)
        return ip + l4 + payload
    }

    /// Whether the TCP/UDP checksum of the IPv4 packet in `frame` (after 14 bytes) is right.
    func l4ChecksumIsValid(_ frame: ByteBuffer) -> Bool {
        let ip = try! IPPacket(parsing: frame.getSlice(at: 14, length: frame.readableBytes - 14)!)
        let length = ip.totalLength - ip.headerLength
        var pseudo = ByteBuffer(bytes: ip.source.bytes + ip.destination.bytes + [0, ip.transportProtocol])
        pseudo.writeInteger(UInt16(length))
        pseudo.writeImmutableBuffer(frame.getSlice(at: 14 + ip.headerLength, length: length)!)
        return InternetChecksum.compute(pseudo, at: 0, length: pseudo.readableBytes) == 0
    }

    func testAFrameWithoutOffloadPassesAsItIs() {
        let frame = ethernet + packet(tcp: true, payload: [1, 2, 3])
        XCTAssertEqual(ReceiveOffload.frames(ByteBuffer(bytes: header() + frame)), [ByteBuffer(bytes: frame)])
    }

    func testAChecksumLeftToOffloadIsFinished() throws {
        // The sender put the folded pseudo-header sum in the field (CHECKSUM_PARTIAL).
        let payload = [UInt8](repeating: 0x61, count: 101)
        var pseudo: UInt32 = 0xc0a8 + 0x4d0a + 0xc0a8 + 0x4d32 + 6 + UInt32(20 + payload.count)
        while pseudo >> 16 != 0 { pseudo = (pseudo & 0xffff) + (pseudo >> 16) }
        let frame = ethernet + packet(tcp: true, payload: payload, check: UInt16(pseudo))
        let out = ReceiveOffload.frames(ByteBuffer(bytes: header(flags: 1, start: 34, offset: 16) + frame))
        XCTAssertEqual(out.count, 1)
        XCTAssertTrue(l4ChecksumIsValid(out[0]))
        XCTAssertFalse(l4ChecksumIsValid(ByteBuffer(bytes: frame)), "the partial sum alone is not a checksum")
    }

    func testATCPSuperPacketIsCutIntoSegments() throws {
        let payload = (0..<3000).map { UInt8(truncatingIfNeeded: $0 * 7) }
        let frame = ethernet + packet(tcp: true, payload: payload, flags: 0x19 | 0x80)  // CWR, PSH, ACK, FIN
        let out = ReceiveOffload.frames(ByteBuffer(bytes: header(flags: 1, gso: 1, size: 1360, start: 34, offset: 16) + frame))
        XCTAssertEqual(out.count, 3)
        var joined: [UInt8] = []
        for (i, s) in out.enumerated() {
            let ip = try IPPacket(parsing: s.getSlice(at: 14, length: s.readableBytes - 14)!)
            XCTAssertEqual(ip.totalLength, s.readableBytes - 14)
            XCTAssertEqual(ip.totalLength, 40 + (i < 2 ? 1360 : 280))
            XCTAssertTrue(InternetChecksum.isValidIPv4Header(s.getSlice(at: 14, length: 20)!, headerLength: 20))
            XCTAssertTrue(l4ChecksumIsValid(s), "segment \(i)")
            XCTAssertEqual(s.getInteger(at: 18, as: UInt16.self), 0x1234 + UInt16(i), "IP identification")
            XCTAssertEqual(s.getInteger(at: 34 + 4, as: UInt32.self), 0x1000 + UInt32(i * 1360), "sequence number")
            let flags = s.getInteger(at: 34 + 13, as: UInt8.self)!
            XCTAssertEqual(flags & 0x80 != 0, i == 0, "CWR on the first only")
            XCTAssertEqual(flags & 0x09 != 0, i == 2, "FIN and PSH on the last only")
            XCTAssertEqual(flags & 0x10, 0x10, "ACK on all")
            joined += s.getBytes(at: 54, length: s.readableBytes - 54)!
        }
        XCTAssertEqual(joined, payload)
    }

    func testAUDPSuperPacketIsCutIntoDatagrams() throws {
        let payload = [UInt8](repeating: 0x42, count: 2500)
        let frame = ethernet + packet(tcp: false, payload: payload)
        let out = ReceiveOffload.frames(ByteBuffer(bytes: header(flags: 1, gso: 5, size: 1000, start: 34, offset: 6) + frame))
        XCTAssertEqual(out.map { $0.readableBytes }, [1042, 1042, 542])
        for s in out {
            XCTAssertEqual(s.getInteger(at: 34 + 4, as: UInt16.self), UInt16(s.readableBytes - 34), "UDP length")
            XCTAssertTrue(l4ChecksumIsValid(s))
        }
    }

    func testDamagedHeadersGiveNothing() {
        let frame = ethernet + packet(tcp: true, payload: [1, 2, 3])
        // A checksum field past the frame's end, GSO without a size, UFO, GSO on a UDP packet claiming TCP.
        XCTAssertEqual(ReceiveOffload.frames(ByteBuffer(bytes: header(flags: 1, start: 60000, offset: 16) + frame)), [])
        XCTAssertEqual(ReceiveOffload.frames(ByteBuffer(bytes: header(gso: 1, size: 0) + frame)), [])
        XCTAssertEqual(ReceiveOffload.frames(ByteBuffer(bytes: header(gso: 3, size: 100) + frame)), [])
        XCTAssertEqual(ReceiveOffload.frames(ByteBuffer(bytes: header(gso: 5, size: 100) + frame)), [])
        XCTAssertEqual(ReceiveOffload.frames(ByteBuffer(bytes: [1, 2, 3])), [])
        // Random headers and frames never crash.
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<20_000 {
            var bytes = header(
                flags: UInt8.random(in: 0...3, using: &rng), gso: [0, 1, 5, 0x81][Int.random(in: 0...3, using: &rng)],
                size: UInt16.random(in: 0...2000, using: &rng), start: UInt16.random(in: 0...80, using: &rng),
                offset: UInt16.random(in: 0...20, using: &rng))
            bytes +=
                ethernet
                + packet(tcp: Bool.random(using: &rng), payload: [UInt8](repeating: 1, count: Int.random(in: 0...3000, using: &rng)))
            for _ in 0..<Int.random(in: 0...4, using: &rng) {
                let i = Int.random(in: 0..<bytes.count, using: &rng)
                bytes[i] = UInt8.random(in: 0...255, using: &rng)
            }
            bytes = Array(bytes.prefix(Int.random(in: 0...bytes.count, using: &rng)))
            _ = ReceiveOffload.frames(ByteBuffer(bytes: bytes))
        }
    }

    /// The raw presence's IPv6 half: a TCPv6 super-packet (gso_type 4) a veth peer passed on, its
    /// checksum left to offload, offsets counted from the Ethernet header, becomes MSS-sized frames
    /// with their Ethernet header and complete checksums; a checksum start inside the Ethernet header
    /// gives nothing.
    func testAnIPv6TCPSuperPacketIsCutIntoSegments() throws {
        let eth6: [UInt8] = [2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 0x0a, 0x86, 0xdd]
        let payload = (0..<3000).map { UInt8(truncatingIfNeeded: $0) }
        var packet = IPv6TestPackets.tcp("fd00:77::10", "fd00:77::50", flags: 0x18, options: [], payload: payload)
        packet[56] = 0x12  // a partial checksum, as offload leaves it: the segments get fresh ones
        packet[57] = 0x34
        let read = ByteBuffer(bytes: header(flags: 1, gso: 4, size: 1000, start: 14 + 40, offset: 16) + eth6 + packet)
        let frames = ReceiveOffload.frames(read).map { Array($0.readableBytesView) }
        XCTAssertEqual(frames.count, 3)
        for (i, f) in frames.enumerated() {
            XCTAssertEqual(Array(f[0..<14]), eth6)
            XCTAssertEqual(f.count, 14 + 40 + 20 + 1000)
            let ip = Array(f[14...])
            XCTAssertEqual(Int(ip[4]) << 8 | Int(ip[5]), 20 + 1000, "payload length")
            XCTAssertTrue(IPv6TestPackets.upperLayerVerifies(ip), "segment \(i)'s TCP checksum")
            XCTAssertEqual(Array(ip[60...]), Array(payload[(i * 1000)..<((i + 1) * 1000)]))
        }
        let bad = ByteBuffer(bytes: header(flags: 1, gso: 4, size: 1000, start: 10, offset: 16) + eth6 + packet)
        XCTAssertEqual(ReceiveOffload.frames(bad), [])
    }
}
