import NIOCore
import PosternPacket
import XCTest

/// MSS clamping of SYNs crossing TUN mode: the option is lowered, the TCP checksum still verifies
/// (checked here with an independent sum), and nothing else is touched; garbage never crashes.
final class TCPMSSClampTests: XCTestCase {
    /// An IPv4 TCP segment from 203.0.113.20:40000 to 192.168.77.10:80 with `options` and a correct
    /// TCP checksum (computed by the plain sum below, not by the code under test).
    func segment(flags: UInt8 = 0x02, options: [UInt8], payload: [UInt8] = [], fragment: UInt16 = 0x4000) -> ByteBuffer {
        precondition(options.count % 4 == 0)
        let tcpLength = 20 + options.count + payload.count
        let total = 20 + tcpLength
        var ip: [UInt8] = [
            0x45, 0, UInt8(total >> 8), UInt8(total & 0xff), 0, 1, UInt8(fragment >> 8), UInt8(fragment & 0xff), 64, 6, 0, 0,
        ]
        ip += [203, 0, 113, 20, 192, 168, 77, 10]
        var tcp: [UInt8] = [
            0x9c, 0x40, 0x00, 0x50, 1, 2, 3, 4, 0, 0, 0, 0, UInt8((20 + options.count) / 4) << 4, flags, 0xff, 0xff, 0, 0, 0, 0,
        ]
        tcp += options + payload
        let sum = Self.sum(Array(ip[12..<20]) + [0, 6, UInt8(tcpLength >> 8), UInt8(tcpLength & 0xff)] + tcp)
        tcp[16] = UInt8(sum >> 8)
        tcp[17] = UInt8(sum & 0xff)
        return ByteBuffer(bytes: ip + tcp)
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

    /// Whether the TCP checksum of a packet built by `segment` verifies.
    func tcpChecksumVerifies(_ p: ByteBuffer) -> Bool {
        let b = p.getBytes(at: p.readerIndex, length: p.readableBytes)!
        let tcpLength = b.count - 20
        return Self.sum(Array(b[12..<20]) + [0, 6, UInt8(tcpLength >> 8), UInt8(tcpLength & 0xff)] + Array(b[20...])) == 0
    }

    func mss(_ p: ByteBuffer, at offset: Int) -> UInt16 { p.getInteger(at: p.readerIndex + offset, as: UInt16.self)! }

    func testSYNIsClampedAndItsChecksumStillVerifies() {
        var p = segment(options: [2, 4, 0x05, 0xb4, 1, 3, 3, 7])  // MSS 1460, NOP, window scale 7
        XCTAssertTrue(tcpChecksumVerifies(p))
        XCTAssertTrue(TCPMSSClamp.clamp(&p, maxMSS: TCPMSSClamp.maxMSS(forMTU: 1400)))
        XCTAssertEqual(mss(p, at: 42), 1360)
        XCTAssertTrue(tcpChecksumVerifies(p))
        // SYN-ACK too, with the option after NOPs at an odd offset.
        var q = segment(flags: 0x12, options: [1, 2, 4, 0x23, 0x28, 1, 1, 1])  // MSS 9000
        XCTAssertTrue(TCPMSSClamp.clamp(&q, maxMSS: 1360))
        XCTAssertEqual(mss(q, at: 43), 1360)
        XCTAssertTrue(tcpChecksumVerifies(q))
    }

    func testWhatNeedsNoClampIsUntouched() {
        let cases: [(String, ByteBuffer)] = [
            ("MSS already small", segment(options: [2, 4, 0x04, 0x00])),
            ("not a SYN", segment(flags: 0x10, options: [2, 4, 0x05, 0xb4])),
            ("no MSS option", segment(options: [1, 1, 1, 0])),
            ("end of options before MSS", segment(options: [0, 0, 0, 0, 2, 4, 0x05, 0xb4])),
            ("option length 0", segment(options: [3, 0, 2, 4, 0x05, 0xb4, 0, 0])),
            ("MSS with a wrong length", segment(options: [2, 3, 0x05, 0, 2, 4, 0x05, 0xb4])),
            ("a later fragment", segment(options: [2, 4, 0x05, 0xb4], fragment: 0x0010)),
        ]
        for (what, original) in cases {
            var p = original
            XCTAssertFalse(TCPMSSClamp.clamp(&p, maxMSS: 1360), what)
            XCTAssertEqual(p, original, what)
        }
        var udp = segment(options: [2, 4, 0x05, 0xb4])
        udp.setInteger(UInt8(17), at: 9)
        let before = udp
        XCTAssertFalse(TCPMSSClamp.clamp(&udp, maxMSS: 1360))
        XCTAssertEqual(udp, before)
    }

    func testGarbageNeverCrashes() {
        var rng = SystemRandomNumberGenerator()
        let good = segment(options: [2, 4, 0x05, 0xb4, 1, 3, 3, 7], payload: [1, 2, 3])
        for _ in 0..<20_000 {
            var p = good
            for _ in 0..<Int.random(in: 1...4, using: &rng) {
                p.setInteger(UInt8.random(in: 0...255, using: &rng), at: Int.random(in: 0..<p.readableBytes, using: &rng))
            }
            if Bool.random(using: &rng) { p.moveWriterIndex(to: Int.random(in: 0...p.writerIndex, using: &rng)) }
            TCPMSSClamp.clamp(&p, maxMSS: 1360)
        }
    }
}
