import NIOCore
import PosternPacket
import PosternWire
import XCTest

final class GSOSegmenterTests: XCTestCase {
    typealias P = OffloadTestPackets

    /// What a tun device with TSO hands over for `segments`: the first one's headers, every payload,
    /// the lengths of the whole, and the pseudo-header's partial sum in the TCP checksum field.
    func superPacket(_ segments: [ByteBuffer], mss: Int) -> (ByteBuffer, VirtioNetHeader) {
        let first = Array(segments[0].readableBytesView)
        let v6 = first[0] >> 4 == 6
        let ipHeader = v6 ? 40 : Int(first[0] & 0x0f) * 4
        let tcpHeader = Int(first[ipHeader + 12] >> 4) * 4
        let headers = ipHeader + tcpHeader
        var bytes = Array(first[0..<headers])
        for s in segments { bytes += Array(s.readableBytesView)[headers...] }
        if v6 {
            bytes[4] = UInt8((bytes.count - 40) >> 8)
            bytes[5] = UInt8((bytes.count - 40) & 0xff)
        } else {
            bytes[2] = UInt8(bytes.count >> 8)
            bytes[3] = UInt8(bytes.count & 0xff)
        }
        let lastFlags = Array(segments.last!.readableBytesView)[ipHeader + 13]
        bytes[ipHeader + 13] |= lastFlags & 0x09
        // The pseudo-header's sum, not inverted, is what CHECKSUM_PARTIAL leaves there.
        let tcpLength = bytes.count - ipHeader
        var pseudo = v6 ? Array(bytes[8..<40]) : Array(bytes[12..<20])
        pseudo += v6 ? P.be32(UInt32(tcpLength)) + [0, 0, 0, 6] : [0, 6] + P.be16(UInt16(tcpLength))
        let partial = ~P.checksumOf(pseudo)
        bytes[ipHeader + 16] = UInt8(partial >> 8)
        bytes[ipHeader + 17] = UInt8(partial & 0xff)
        let header = VirtioNetHeader(
            flags: VirtioNetHeader.needsChecksum, gso: v6 ? .tcpV6 : .tcpV4, headerLength: UInt16(headers), gsoSize: UInt16(mss),
            checksumStart: UInt16(ipHeader), checksumOffset: 16)
        return (ByteBuffer(bytes: bytes), header)
    }

    func testTCPv4SuperPacketGivesBackTheSegmentsByteForByte() throws {
        let segments = P.run(count: 5, mss: 1000, last: 321, pushLast: true)
        let (packet, header) = superPacket(segments, mss: 1000)
        let split = try GSOSegmenter.split(packet, header: header)
        XCTAssertEqual(split.count, 5)
        XCTAssertEqual(split, segments)
        for s in split { XCTAssertTrue(P.checksumsValid(s)) }
    }

    func testTCPv6WithOptionsAndEqualSegments() throws {
        let timestamps: [UInt8] = [1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]
        let segments = P.run(count: 4, mss: 1200, v6: true, options: timestamps)
        let (packet, header) = superPacket(segments, mss: 1200)
        XCTAssertEqual(try GSOSegmenter.split(packet, header: header), segments)
    }

    func testFINAndPSHOnlyOnTheLastCWROnlyOnTheFirst() throws {
        var t = P.TCP(payload: [UInt8](repeating: 7, count: 2500))
        t.flags = 0x80 | 0x10 | 0x08 | 0x01  // CWR ACK PSH FIN
        var packet = P.tcp(t)
        let header = VirtioNetHeader(gso: .tcpV4, gsoSize: 1000)
        let split = try GSOSegmenter.split(packet, header: header)
        XCTAssertEqual(split.map { $0.getInteger(at: $0.readerIndex + 33, as: UInt8.self)! }, [0x90, 0x10, 0x19])
        XCTAssertEqual(split.map { $0.getInteger(at: $0.readerIndex + 24, as: UInt32.self)! }, [1000, 2000, 3000])
        XCTAssertEqual(split.map { $0.getInteger(at: $0.readerIndex + 4, as: UInt16.self)! }, [100, 101, 102])
        XCTAssertEqual(split.map(\.readableBytes), [1040, 1040, 540])
        for s in split { XCTAssertTrue(P.checksumsValid(s)) }
        // The identification wraps.
        packet.setInteger(UInt16(0xffff), at: 4)
        let wrapped = try GSOSegmenter.split(packet, header: header)
        XCTAssertEqual(wrapped.map { $0.getInteger(at: $0.readerIndex + 4, as: UInt16.self)! }, [0xffff, 0, 1])
        for s in wrapped { XCTAssertTrue(P.checksumsValid(s)) }
    }

    func testUDPSegmentationBothVersions() throws {
        for v6 in [false, true] {
            let payload = (0..<3000).map { UInt8(truncatingIfNeeded: $0) }
            let packet = P.udp(v6: v6, payload: payload)
            let header = VirtioNetHeader(
                flags: VirtioNetHeader.needsChecksum, gso: .udpL4, gsoSize: 1400, checksumStart: v6 ? 40 : 20, checksumOffset: 6)
            let split = try GSOSegmenter.split(packet, header: header)
            let ipHeader = v6 ? 40 : 20
            XCTAssertEqual(split.map(\.readableBytes), [1400, 1400, 200].map { $0 + ipHeader + 8 })
            var joined: [UInt8] = []
            for s in split {
                XCTAssertTrue(P.checksumsValid(s), "v6 \(v6)")
                let bytes = Array(s.readableBytesView)
                XCTAssertEqual(Int(bytes[ipHeader + 4]) << 8 | Int(bytes[ipHeader + 5]), bytes.count - ipHeader)
                joined += bytes[(ipHeader + 8)...]
            }
            XCTAssertEqual(joined, payload)
        }
    }

    func testPartialChecksumOfASinglePacketIsCompleted() throws {
        let good = P.tcp(P.TCP(payload: Array("hello".utf8)))
        var partial = good
        // Replace the checksum with the pseudo-header's sum, as CHECKSUM_PARTIAL leaves it.
        let pseudo = P.src4 + P.dst4 + [0, 6] + P.be16(25)
        partial.setInteger(~P.checksumOf(pseudo), at: 36)
        let header = VirtioNetHeader(flags: VirtioNetHeader.needsChecksum, checksumStart: 20, checksumOffset: 16)
        XCTAssertEqual(try GSOSegmenter.split(partial, header: header), [good])
        // Without the flag the packet passes as it is.
        XCTAssertEqual(try GSOSegmenter.split(partial, header: .plain), [partial])
        // A GSO packet no larger than one segment comes back whole, checksum completed.
        XCTAssertEqual(try GSOSegmenter.split(partial, header: VirtioNetHeader(gso: .tcpV4, gsoSize: 1400)), [good])
    }

    // MARK: - Headers that lie

    func expect(_ packet: ByteBuffer, _ header: VirtioNetHeader, _ refusal: GSOSegmenter.Refusal, line: UInt = #line) {
        XCTAssertThrowsError(try GSOSegmenter.split(packet, header: header), line: line) { error in
            XCTAssertEqual(error as? GSOSegmenter.Refusal, refusal, line: line)
        }
    }

    func testRefusesLies() {
        let tcp = P.tcp(P.TCP(payload: [UInt8](repeating: 1, count: 3000)))
        let udp = P.udp(payload: [UInt8](repeating: 2, count: 3000))
        expect(tcp, VirtioNetHeader(gso: .tcpV4, gsoSize: 0), .badSegmentSize(0))
        expect(tcp, VirtioNetHeader(gso: .tcpV4, gsoSize: 2), .badSegmentSize(2))
        expect(tcp, VirtioNetHeader(gso: .tcpV6, gsoSize: 1000), .gsoMismatch)
        expect(udp, VirtioNetHeader(gso: .tcpV4, gsoSize: 1000), .gsoMismatch)
        expect(tcp, VirtioNetHeader(gso: .udpL4, gsoSize: 1000), .gsoMismatch)
        expect(udp, VirtioNetHeader(gso: .udp, gsoSize: 1000), .unsupportedGSOType(3))
        var unknown = VirtioNetHeader(gso: .tcpV4, gsoSize: 1000)
        unknown.gsoTypeRaw = 9
        expect(tcp, unknown, .unsupportedGSOType(9))
        expect(tcp, VirtioNetHeader(flags: 1, gso: .tcpV4, gsoSize: 1000, checksumStart: 20, checksumOffset: 6), .badChecksumOffsets)
        expect(tcp, VirtioNetHeader(flags: 1, gso: .tcpV4, gsoSize: 1000, checksumStart: 24, checksumOffset: 16), .badChecksumOffsets)
        expect(tcp, VirtioNetHeader(flags: 1, checksumStart: 3030, checksumOffset: 16), .badChecksumOffsets)
        expect(tcp, VirtioNetHeader(flags: 1, checksumStart: 4, checksumOffset: 16), .badChecksumOffsets)
        expect(tcp, VirtioNetHeader(flags: 1, checksumStart: 20, checksumOffset: 0xffff), .badChecksumOffsets)
        // The IP header claims more bytes than there are.
        var long = tcp
        long.setInteger(UInt16(3100), at: 2)
        expect(long, VirtioNetHeader(gso: .tcpV4, gsoSize: 1000), .malformedIP)
        // A TCP data offset past the packet's end, and one below 20.
        var small = P.tcp(P.TCP(payload: [1, 2, 3, 4]))
        small.setInteger(UInt8(0xf0), at: 32)
        expect(small, VirtioNetHeader(gso: .tcpV4, gsoSize: 1000), .malformedTransport)
        small.setInteger(UInt8(0x30), at: 32)
        expect(small, VirtioNetHeader(gso: .tcpV4, gsoSize: 1000), .malformedTransport)
        // A fragment.
        var fragment = tcp
        fragment.setInteger(UInt16(0x2000), at: 6)
        expect(fragment, VirtioNetHeader(gso: .tcpV4, gsoSize: 1000), .gsoMismatch)
        expect(ByteBuffer(bytes: [0x45, 0]), VirtioNetHeader(gso: .tcpV4, gsoSize: 1000), .malformedIP)
        expect(ByteBuffer(), VirtioNetHeader(flags: 1, checksumStart: 0, checksumOffset: 0), .malformedIP)
    }

    /// A 64 KB super-packet in 536-byte segments (the IPv4 default MSS) stays within the bound and
    /// yields exactly the payload.
    func testLargestSuperPacket() throws {
        let payload = 65_535 - 40
        let packet = P.tcp(P.TCP(payload: [UInt8](repeating: 3, count: payload)))
        let split = try GSOSegmenter.split(packet, header: VirtioNetHeader(gso: .tcpV4, gsoSize: 536))
        XCTAssertEqual(split.count, (payload + 535) / 536)
        XCTAssertEqual(split.reduce(0) { $0 + $1.readableBytes - 40 }, payload)
        XCTAssertTrue(split.allSatisfy { P.checksumsValid($0) && $0.readableBytes <= 576 })
    }

    /// Random headers over random and mutated packets: refused or split, never a crash, and what is
    /// split adds up to the payload.
    func testGarbageNeverCrashes() {
        var rng = SystemRandomNumberGenerator()
        let seeds = [P.tcp(P.TCP(payload: [UInt8](repeating: 1, count: 4000))), P.udp(payload: [UInt8](repeating: 2, count: 3000))]
        for i in 0..<3000 {
            var bytes = Array(seeds[i % 2].readableBytesView)
            for _ in 0..<Int.random(in: 0...4, using: &rng) {
                bytes[Int.random(in: 0..<60, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
            }
            if i % 7 == 0 { bytes = Array(bytes.prefix(Int.random(in: 0...bytes.count, using: &rng))) }
            let raw = (0..<10).map { _ in UInt8.random(in: 0...255, using: &rng) }
            var header = VirtioNetHeader(ByteBuffer(bytes: raw), at: 0)!
            if i % 3 == 0 { header.gsoTypeRaw = [0, 1, 4, 5][i % 4] }
            _ = try? GSOSegmenter.split(ByteBuffer(bytes: bytes), header: header)
        }
    }

    /// A 64 KB super-packet toward the tunnel whose segments would exceed TUN mode's MTU (a device
    /// MTU raised by hand, a sender that ignored the clamped MSS): cut as asked, and then every segment
    /// is refused by the policy as too large, and answerable with "fragmentation needed"; nothing
    /// larger than the MTU can reach the channel. With an MSS that fits, every segment passes.
    func testSuperPacketOverTheMTUIsRefusedSegmentBySegment() throws {
        let policy = PacketPolicy(
            remoteAddress: IPAddress("10.77.0.2")!, prefixes: [MediatorEnvironment.AddressPrefix(parsing: "192.168.77.0/24")!],
            mtu: 1400)
        let packet = P.tcp(P.TCP(payload: [UInt8](repeating: 4, count: 65_000)))
        let tooBig = try GSOSegmenter.split(packet, header: VirtioNetHeader(gso: .tcpV4, gsoSize: 1460))
        XCTAssertEqual(tooBig.count, 45)
        for segment in tooBig.dropLast() {
            XCTAssertEqual(policy.checkFromLAN(segment), .tooLarge)
            XCTAssertNotNil(ICMPFragmentationNeeded.make(for: segment, nextHopMTU: 1400))
        }
        let fitting = try GSOSegmenter.split(packet, header: VirtioNetHeader(gso: .tcpV4, gsoSize: 1360))
        XCTAssertTrue(fitting.allSatisfy { policy.checkFromLAN($0) == nil })
    }
}
