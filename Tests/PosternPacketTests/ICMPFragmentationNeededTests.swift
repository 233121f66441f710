import NIOCore
import PosternPacket
import XCTest

/// ICMP "fragmentation needed" for DF packets TUN mode cannot carry: addressing, both checksums
/// (verified by an independent sum), the next-hop MTU, the quote (IP header with its options + 8 bytes,
/// RFC 792/1191), and the packets that must never get an error (RFC 1122 §3.2.2); garbage never crashes.
final class ICMPFragmentationNeededTests: XCTestCase {
    /// An IPv4 packet from 203.0.113.20 to 192.168.77.10 with a correct header checksum.
    func packet(
        protocol proto: UInt8 = 1, payload: [UInt8], flags: UInt16 = 0x4000, options: [UInt8] = [],
        source: [UInt8] = [203, 0, 113, 20], destination: [UInt8] = [192, 168, 77, 10]
    ) -> [UInt8] {
        precondition(options.count % 4 == 0)
        let header = 20 + options.count
        let total = header + payload.count
        var ip: [UInt8] = [
            0x40 | UInt8(header / 4), 0, UInt8(total >> 8), UInt8(total & 0xff), 0x12, 0x34, UInt8(flags >> 8), UInt8(flags & 0xff),
            63, proto, 0, 0,
        ]
        ip += source + destination + options
        let sum = Self.sum(ip)
        ip[10] = UInt8(sum >> 8)
        ip[11] = UInt8(sum & 0xff)
        return ip + payload
    }

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

    /// An echo request of `size` bytes of data (ICMP header included in the payload).
    func echo(size: Int) -> [UInt8] { [8, 0, 0xab, 0xcd, 0, 7, 0, 1] + [UInt8](repeating: 0x5a, count: size) }

    func make(_ bytes: [UInt8], mtu: Int = 1400) -> [UInt8]? {
        ICMPFragmentationNeeded.make(for: ByteBuffer(bytes: bytes), nextHopMTU: mtu).map { Array($0.readableBytesView) }
    }

    func testAnEchoWithDFGetsFragmentationNeededBackToItsSender() throws {
        let original = packet(payload: echo(size: 1472))
        let error = try XCTUnwrap(make(original))
        XCTAssertEqual(error.count, 20 + 8 + 20 + 8)
        // IPv4 header: version 4, 20 bytes, total length, ICMP, back from the destination to the source.
        XCTAssertEqual(error[0], 0x45)
        XCTAssertEqual(Int(error[2]) << 8 | Int(error[3]), error.count)
        XCTAssertEqual(error[9], 1)
        XCTAssertGreaterThan(error[8], 0)
        XCTAssertEqual(Array(error[12..<16]), [192, 168, 77, 10])
        XCTAssertEqual(Array(error[16..<20]), [203, 0, 113, 20])
        XCTAssertEqual(Self.sum(Array(error[0..<20])), 0, "IPv4 header checksum")
        // ICMP: type 3 code 4, unused zero, next-hop MTU, checksum over the whole message.
        XCTAssertEqual(error[20], 3)
        XCTAssertEqual(error[21], 4)
        XCTAssertEqual(Array(error[24..<26]), [0, 0])
        XCTAssertEqual(Int(error[26]) << 8 | Int(error[27]), 1400)
        XCTAssertEqual(Self.sum(Array(error[20...])), 0, "ICMP checksum")
        // The quote: the original IP header and the first 8 bytes of its data, unchanged.
        XCTAssertEqual(Array(error[28...]), Array(original[0..<28]))
        // And the policy's parser takes it as a well-formed packet.
        let parsed = try IPPacket(parsing: ByteBuffer(bytes: error))
        XCTAssertEqual(parsed.totalLength, error.count)
    }

    func testTheQuoteKeepsIPOptionsAndAShortPayload() throws {
        let options: [UInt8] = [0x94, 0x04, 0, 0]  // router alert
        let withOptions = packet(protocol: 17, payload: [UInt8](repeating: 1, count: 100), options: options)
        let error = try XCTUnwrap(make(withOptions))
        XCTAssertEqual(Array(error[28...]), Array(withOptions[0..<(24 + 8)]))
        XCTAssertEqual(Self.sum(Array(error[20...])), 0)
        // Fewer than 8 bytes of data: all of them, no padding from beyond the packet.
        let short = packet(protocol: 17, payload: [1, 2, 3])
        let shortError = try XCTUnwrap(make(short))
        XCTAssertEqual(Array(shortError[28...]), short)
        XCTAssertEqual(Self.sum(Array(shortError[20...])), 0, "odd length ICMP checksum")
    }

    func testTheMTUIsCarriedAsAsked() throws {
        let error = try XCTUnwrap(make(packet(protocol: 6, payload: [UInt8](repeating: 0, count: 40)), mtu: 1280))
        XCTAssertEqual(Int(error[26]) << 8 | Int(error[27]), 1280)
    }

    func testNoErrorWithoutDFOrForLaterFragments() {
        XCTAssertNil(make(packet(payload: echo(size: 1472), flags: 0)), "no DF")
        XCTAssertNil(make(packet(payload: echo(size: 1472), flags: 0x2000)), "MF without DF")
        XCTAssertNil(make(packet(payload: echo(size: 1472), flags: 0x4000 | 185)), "not the first fragment")
        XCTAssertNotNil(make(packet(payload: echo(size: 1472), flags: 0x4000)))
    }

    func testNoErrorAboutAnICMPError() {
        for type: UInt8 in [3, 4, 5, 11, 12] {
            XCTAssertNil(make(packet(payload: [type, 0, 0, 0, 0, 0, 0, 0] + [UInt8](repeating: 0, count: 28))), "ICMP type \(type)")
        }
        for type: UInt8 in [0, 8, 13] {
            XCTAssertNotNil(make(packet(payload: [type, 0, 0, 0, 0, 0, 0, 0])), "ICMP query type \(type)")
        }
        XCTAssertNil(make(packet(payload: [])), "an ICMP packet without its type byte")
    }

    func testNoErrorForAddressesThatAreNotOneHost() {
        let payload = echo(size: 10)
        for source: [UInt8] in [[0, 0, 0, 0], [127, 0, 0, 1], [224, 0, 0, 1], [240, 0, 0, 1], [255, 255, 255, 255]] {
            XCTAssertNil(make(packet(payload: payload, source: source)), "source \(source)")
        }
        for destination: [UInt8] in [[224, 0, 0, 251], [255, 255, 255, 255], [0, 0, 0, 0]] {
            XCTAssertNil(make(packet(payload: payload, destination: destination)), "destination \(destination)")
        }
    }

    func testNoErrorForMalformedPackets() {
        var bad = packet(payload: echo(size: 100))
        bad[10] ^= 0xff
        XCTAssertNil(make(bad), "bad header checksum")
        XCTAssertNil(make(Array(packet(payload: echo(size: 100)).prefix(60))), "shorter than its total length")
        XCTAssertNil(make([]))
        XCTAssertNil(make([0x45]))
        var v6 = [UInt8](repeating: 0, count: 60)
        v6[0] = 0x60
        XCTAssertNil(make(v6))
    }

    func testGarbageNeverCrashes() {
        var rng = SystemRandomNumberGenerator()
        let base = packet(payload: echo(size: 64))
        for _ in 0..<20_000 {
            var bytes = base
            for _ in 0..<Int.random(in: 1...6, using: &rng) {
                bytes[Int.random(in: 0..<bytes.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
            }
            bytes = Array(bytes.prefix(Int.random(in: 0...bytes.count, using: &rng)))
            if let error = make(bytes) {
                XCTAssertEqual(Self.sum(Array(error[0..<20])), 0)
                XCTAssertEqual(Self.sum(Array(error[20...])), 0)
            }
        }
    }

    func testHasDontFragment() {
        XCTAssertTrue(ICMPFragmentationNeeded.hasDontFragment(ByteBuffer(bytes: packet(payload: [], flags: 0x4000))))
        XCTAssertFalse(ICMPFragmentationNeeded.hasDontFragment(ByteBuffer(bytes: packet(payload: [], flags: 0))))
        XCTAssertFalse(ICMPFragmentationNeeded.hasDontFragment(ByteBuffer(bytes: [0x45, 0, 0])))
    }
}
