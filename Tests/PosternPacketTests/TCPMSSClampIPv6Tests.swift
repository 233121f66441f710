import NIOCore
import PosternPacket
import XCTest

/// MSS clamping of IPv6 SYNs: MTU − 60 (IPv6's header is 20 bytes longer), the TCP checksum over the
/// IPv6 pseudo-header still verifies (independent sum), other segments and extension headers left
/// alone; garbage never crashes.
final class TCPMSSClampIPv6Tests: XCTestCase {
    typealias P = IPv6TestPackets

    func mss(_ p: ByteBuffer, at offset: Int) -> UInt16 { p.getInteger(at: p.readerIndex + offset, as: UInt16.self)! }
    func bytes(_ p: ByteBuffer) -> [UInt8] { Array(p.readableBytesView) }

    func testIPv6SYNIsClampedToMTUMinus60() {
        var p = ByteBuffer(bytes: P.tcp("2001:db8:113::20", "fd00:77::10", options: [2, 4, 0x05, 0xa0, 1, 3, 3, 7]))  // MSS 1440
        XCTAssertTrue(P.upperLayerVerifies(bytes(p)))
        XCTAssertTrue(TCPMSSClamp.clamp(&p, maxMSS: TCPMSSClamp.maxMSS(forMTU: 1400)))
        XCTAssertEqual(mss(p, at: 62), 1340)
        XCTAssertTrue(P.upperLayerVerifies(bytes(p)))
        // SYN-ACK with data after the header and the option after NOPs.
        var q = ByteBuffer(
            bytes: P.tcp("fd00:77::10", "fd00:77::50", flags: 0x12, options: [1, 2, 4, 0x23, 0x28, 1, 1, 1], payload: [1, 2, 3]))
        XCTAssertTrue(TCPMSSClamp.clamp(&q, maxMSS: 1360))
        XCTAssertEqual(mss(q, at: 63), 1340)
        XCTAssertTrue(P.upperLayerVerifies(bytes(q)))
    }

    func testWhatIsLeftAlone() {
        // A small MSS, a segment without SYN, a segment behind a hop-by-hop header, UDP.
        for original in [
            P.tcp("2001:db8::1", "fd00:77::10", options: [2, 4, 0x04, 0x00]),
            P.tcp("2001:db8::1", "fd00:77::10", flags: 0x10, options: [2, 4, 0x05, 0xb4]),
            P.packet("2001:db8::1", "fd00:77::10", next: 0, payload: [6, 0, 0, 0, 0, 0, 0, 0] + [UInt8](repeating: 0, count: 24)),
            P.packet("2001:db8::1", "fd00:77::10", next: 17, payload: [UInt8](repeating: 2, count: 28)),
        ] {
            var p = ByteBuffer(bytes: original)
            XCTAssertFalse(TCPMSSClamp.clamp(&p, maxMSS: 1360))
            XCTAssertEqual(bytes(p), original)
        }
    }

    func testFuzzNeverCrashes() {
        var rng = SystemRandomNumberGenerator()
        let good = P.tcp("2001:db8::1", "fd00:77::10", options: [2, 4, 0x05, 0xb4, 1, 3, 3, 7])
        for _ in 0..<5000 {
            var b = good
            for _ in 0..<Int.random(in: 1...4, using: &rng) {
                b[Int.random(in: 0..<b.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
            }
            if Bool.random(using: &rng) { b = Array(b.prefix(Int.random(in: 0...b.count, using: &rng))) }
            var p = ByteBuffer(bytes: b)
            let before = bytes(p)
            if TCPMSSClamp.clamp(&p, maxMSS: 1360) {
                XCTAssertEqual(p.readableBytes, before.count, "clamping never changes the length")
            } else {
                XCTAssertEqual(bytes(p), before)
            }
        }
    }
}
