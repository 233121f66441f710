import NIOCore
import PosternPacket
import XCTest

final class TCPCoalescerTests: XCTestCase {
    typealias P = OffloadTestPackets

    /// Coalesced writes, cut again as the kernel does (`GSOSegmenter`), give the input back.
    func assertRoundTrip(_ writes: [TCPCoalescer.Write], _ expected: [ByteBuffer], line: UInt = #line) throws {
        var out: [ByteBuffer] = []
        for w in writes { out += try GSOSegmenter.split(w.packet, header: w.header) }
        XCTAssertEqual(out, expected, line: line)
        XCTAssertEqual(writes.reduce(0) { $0 + $1.count }, expected.count, line: line)
    }

    func testARunOfOneFlowBecomesOneWrite() throws {
        let run = P.run(count: 10, mss: 1400, last: 600, pushLast: true)
        let writes = TCPCoalescer.coalesce(run)
        XCTAssertEqual(writes.count, 1)
        let w = writes[0]
        XCTAssertEqual(w.count, 10)
        XCTAssertEqual(w.header.gso, .tcpV4)
        XCTAssertEqual(w.header.flags, VirtioNetHeader.needsChecksum)
        XCTAssertEqual(w.header.gsoSize, 1400)
        XCTAssertEqual(w.header.headerLength, 40)
        XCTAssertEqual(w.header.checksumStart, 20)
        XCTAssertEqual(w.header.checksumOffset, 16)
        XCTAssertEqual(w.packet.readableBytes, 40 + 9 * 1400 + 600)
        XCTAssertEqual(w.packet.getInteger(at: 2, as: UInt16.self), UInt16(40 + 9 * 1400 + 600))
        XCTAssertEqual(w.packet.getInteger(at: 33, as: UInt8.self), 0x18)  // PSH of the last
        XCTAssertTrue(InternetChecksum.isValidIPv4Header(w.packet, headerLength: 20))
        try assertRoundTrip(writes, run)
    }

    func testIPv6RunWithTimestamps() throws {
        let run = P.run(count: 6, mss: 1200, v6: true, options: [1, 1, 8, 10, 0, 0, 0, 5, 0, 0, 0, 6])
        let writes = TCPCoalescer.coalesce(run)
        XCTAssertEqual(writes.map(\.count), [6])
        XCTAssertEqual(writes[0].header.gso, .tcpV6)
        XCTAssertEqual(writes[0].packet.getInteger(at: 4, as: UInt16.self), UInt16(32 + 6 * 1200))
        try assertRoundTrip(writes, run)
    }

    func testPSHEndsTheRun() throws {
        var run = P.run(count: 4, mss: 1000)
        run[1].setInteger(UInt8(0x18), at: 33)
        run[1] = refreshTCPChecksum(run[1])
        let writes = TCPCoalescer.coalesce(run)
        XCTAssertEqual(writes.map(\.count), [2, 2])
        try assertRoundTrip(writes, run)
    }

    func testFlagsThatNeverJoin() throws {
        for flag: UInt8 in [0x01, 0x02, 0x04, 0x20, 0x40, 0x80] {  // FIN SYN RST URG ECE CWR
            var run = P.run(count: 4, mss: 1000)
            run[2].setInteger(UInt8(0x10 | flag), at: 33)
            run[2] = refreshTCPChecksum(run[2])
            let writes = TCPCoalescer.coalesce(run)
            XCTAssertEqual(writes.map(\.count), [2, 1, 1], "flag \(flag)")
            XCTAssertEqual(writes[1].header, .plain)
            XCTAssertEqual(writes[1].packet, run[2])
            try assertRoundTrip(writes, run)
        }
    }

    func testOutOfOrderStaysInOrder() throws {
        let run = P.run(count: 3, mss: 1000)
        let shuffled = [run[0], run[2], run[1]]
        let writes = TCPCoalescer.coalesce(shuffled)
        XCTAssertEqual(writes.map(\.count), [1, 1, 1])
        try assertRoundTrip(writes, shuffled)
        // A repeated segment (a retransmission) does not join either.
        let again = [run[0], run[1], run[1]]
        XCTAssertEqual(TCPCoalescer.coalesce(again).map(\.count), [2, 1])
    }

    func testFlowsInterleaved() throws {
        let a = P.run(count: 3, mss: 1000)
        var t = P.TCP(sport: 40_001, payload: [UInt8](repeating: 5, count: 1000))
        var b: [ByteBuffer] = []
        for _ in 0..<3 {
            b.append(P.tcp(t))
            t.seq &+= 1000
            t.id &+= 1
        }
        let mixed = [a[0], b[0], a[1], b[1], a[2], b[2]]
        let writes = TCPCoalescer.coalesce(mixed)
        XCTAssertEqual(writes.map(\.count), [3, 3])
        try assertRoundTrip(writes, a + b)
        // Another source address is another flow too.
        var c = P.TCP(payload: [UInt8](repeating: 5, count: 1000))
        c.seq = 2000
        c.id = 101
        c.source = [192, 168, 77, 11]
        XCTAssertEqual(TCPCoalescer.coalesce([a[0], P.tcp(c)]).map(\.count), [1, 1])
    }

    func testHeadersThatDifferDoNotJoin() throws {
        let base = P.TCP(payload: [UInt8](repeating: 9, count: 1000))
        func second(_ change: (inout P.TCP) -> Void) -> [ByteBuffer] {
            var t = base
            t.seq += 1000
            t.id += 1
            change(&t)
            return [P.tcp(base), P.tcp(t)]
        }
        let cases: [(String, (inout P.TCP) -> Void)] = [
            ("ack", { $0.ack += 1 }), ("window", { $0.window += 1 }), ("ttl", { $0.ttl -= 1 }), ("tos", { $0.tos = 4 }),
            ("no DF", { $0.fragment = 0 }), ("id jump", { $0.id += 5 }), ("options", { $0.options = [1, 1, 1, 1] }),
            ("larger payload", { $0.payload += [1] }), ("no payload", { $0.payload = [] }),
        ]
        for (name, change) in cases {
            let pair = second(change)
            XCTAssertEqual(TCPCoalescer.coalesce(pair).map(\.count), [1, 1], name)
        }
        // A smaller payload joins and ends the run.
        var t = base
        let pair = second { $0.payload = [1, 2, 3] }
        t.seq += 1003
        t.id += 2
        let three = pair + [P.tcp(t)]
        XCTAssertEqual(TCPCoalescer.coalesce(three).map(\.count), [2, 1])
        try assertRoundTrip(TCPCoalescer.coalesce(three), three)
    }

    func testWhatIsNotEligiblePassesUntouched() {
        var withOptions = P.TCP(payload: [1, 2, 3, 4])
        withOptions.ipOptions = [1, 1, 1, 0]
        var fragment = P.TCP(payload: [1, 2, 3, 4])
        fragment.fragment = 0x2000
        var badChecksum = P.tcp(P.TCP(seq: 1004, payload: [1, 2, 3, 4], id: 101))
        badChecksum.setInteger(UInt16(0x1234), at: 36)
        let packets = [
            P.tcp(P.TCP(payload: [1, 2, 3, 4])), badChecksum, P.tcp(withOptions), P.tcp(fragment), P.udp(payload: [1, 2]),
            ByteBuffer(bytes: [0x45]), ByteBuffer(), ByteBuffer(bytes: [0x60, 1, 2]),
        ]
        let writes = TCPCoalescer.coalesce(packets)
        XCTAssertEqual(writes.map(\.packet), packets)
        XCTAssertTrue(writes.allSatisfy { $0.header == .plain && $0.count == 1 })
    }

    func testSixtyFourKilobytesAtMost() throws {
        let run = P.run(count: 60, mss: 1400)
        let writes = TCPCoalescer.coalesce(run)
        XCTAssertEqual(writes.map(\.count), [46, 14])
        XCTAssertTrue(writes.allSatisfy { $0.packet.readableBytes <= 65_535 })
        try assertRoundTrip(writes, run)
    }

    /// Random runs, shuffled now and then: every write cuts back into the input, in order per flow.
    func testRandomRunsRoundTrip() throws {
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<200 {
            let v6 = Bool.random(using: &rng)
            let mss = Int.random(in: 1...1400, using: &rng)
            var run = P.run(count: Int.random(in: 1...30, using: &rng), mss: mss, last: Int.random(in: 1...mss, using: &rng), v6: v6)
            if Int.random(in: 0..<4, using: &rng) == 0, run.count > 2 { run.swapAt(0, run.count - 1) }
            let writes = TCPCoalescer.coalesce(run)
            try assertRoundTrip(writes, run)
        }
    }

    func refreshTCPChecksum(_ p: ByteBuffer) -> ByteBuffer {
        var p = p
        p.setInteger(UInt16(0), at: 36)
        let bytes = Array(p.readableBytesView)
        let pseudo = Array(bytes[12..<20]) + [0, 6] + P.be16(UInt16(bytes.count - 20))
        p.setInteger(P.checksumOf(pseudo + Array(bytes[20...])), at: 36)
        return p
    }
}
