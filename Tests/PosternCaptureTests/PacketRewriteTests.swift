import PosternCapture
import PosternPcap
import PosternWire
import XCTest

/// Replay in TUN mode, the pure parts: address rewriting keeps every checksum right (incrementally,
/// RFC 1624, checked against packets built from scratch with the new addresses), ICMP errors' quoted
/// headers follow the same map, fragments keep their data; the comparison lets only the TTL (by the
/// hop count) and the header checksum (if valid) differ; the plan groups a real capture's packets
/// and says why what it does not replay is skipped.
final class PacketRewriteTests: XCTestCase {
    typealias P = TestPackets
    let newA: [UInt8] = [192, 168, 77, 50]
    let newB: [UInt8] = [192, 168, 77, 10]
    var map: [[UInt8]: [UInt8]] { [P.a4: newA, P.b4: newB] }

    func endpoint(_ a: [UInt8], _ port: UInt16) -> Endpoint { Endpoint(IPAddress(bytes: a)!, port) }

    /// RFC 1624 section 4's example: HC 0xDD2F, m 0x5555 -> m' 0x3285 gives 0x0000 (not 0xFFFF).
    func testAdjustFollowsRFC1624Example() {
        XCTAssertEqual(PacketRewriter.adjust(0xDD2F, old: [0x55, 0x55], new: [0x32, 0x85]), 0x0000)
    }

    func testUDPAndTCPRewrittenAsIfBuiltWithTheNewAddresses() throws {
        for payload in [[UInt8](), [1], Array("an odd-length payload".utf8), [UInt8](repeating: 0xff, count: 1_001)] {
            let old = PacketSynthesizer(client: endpoint(P.a4, 40_000), server: endpoint(P.b4, 53))!
            let new = PacketSynthesizer(client: endpoint(newA, 40_000), server: endpoint(newB, 53))!
            for direction in [FlowDirection.fromInitiator, .fromResponder] {
                let rewritten = try XCTUnwrap(PacketRewriter.rewrite(old.datagram(from: direction, payload), map: map))
                XCTAssertEqual(rewritten, new.datagram(from: direction, payload), "UDP \(payload.count) bytes \(direction)")
            }
            var oldTCP = PacketSynthesizer(client: endpoint(P.a4, 40_000), server: endpoint(P.b4, 80))!
            var newTCP = PacketSynthesizer(client: endpoint(newA, 40_000), server: endpoint(newB, 80))!
            let before = oldTCP.open() + oldTCP.data(from: .fromResponder, payload)
            let after = newTCP.open() + newTCP.data(from: .fromResponder, payload)
            XCTAssertEqual(before.map { PacketRewriter.rewrite($0, map: map)! }, after, "TCP \(payload.count) bytes")
        }
    }

    func testUDPWithoutChecksumStaysWithout() throws {
        let packet = P.ipv4(P.a4, P.b4, proto: 17, P.udp(1, 2, [9, 9, 9]))
        let rewritten = try XCTUnwrap(PacketRewriter.rewrite(packet, map: map))
        XCTAssertEqual(Array(rewritten[26..<28]), [0, 0])
        XCTAssertEqual(Array(rewritten[12..<20]), newA + newB)
        XCTAssertEqual(PacketSynthesizer.checksum(Array(rewritten[0..<20])), 0, "header checksum valid")
    }

    /// A port unreachable from B about A's UDP datagram to B: outer and quoted addresses mapped, the
    /// quoted header's and UDP checksums and the ICMP checksum as if built with the lab's addresses.
    func testICMPErrorQuoteRewrittenConsistently() throws {
        func error(_ a: [UInt8], _ b: [UInt8]) -> [UInt8] {
            let quoted = PacketSynthesizer(client: endpoint(a, 40_000), server: endpoint(b, 53))!
                .datagram(from: .fromInitiator, Array("query".utf8))
            var icmp: [UInt8] = [3, 3, 0, 0, 0, 0, 0, 0] + quoted
            let sum = PacketSynthesizer.checksum(icmp)
            icmp[2] = UInt8(sum >> 8)
            icmp[3] = UInt8(sum & 0xff)
            var ip = P.ipv4(b, a, proto: 1, icmp)
            let h = PacketSynthesizer.checksum(Array(ip[0..<20]))
            ip[10] = UInt8(h >> 8)
            ip[11] = UInt8(h & 0xff)
            return ip
        }
        let recorded = error(P.a4, P.b4)
        XCTAssertEqual(PacketRewriter.rewrite(recorded, map: map), error(newA, newB))
        // A quote cut anywhere (as captures and routers do) never crashes and keeps the outer header right.
        for cut in 20..<recorded.count {
            var short = Array(recorded[0..<cut])
            short[2] = UInt8(cut >> 8)
            short[3] = UInt8(cut & 0xff)
            let out = try XCTUnwrap(PacketRewriter.rewrite(short, map: map), "cut at \(cut)")
            XCTAssertEqual(Array(out[12..<20]), newB + newA)
            XCTAssertEqual(out.count, cut)
        }
    }

    func testLaterFragmentKeepsItsData() throws {
        let data = [UInt8](repeating: 0xab, count: 64)
        let fragment = P.ipv4(P.a4, P.b4, proto: 17, data, fragment: (77, 1_480, false))
        let out = try XCTUnwrap(PacketRewriter.rewrite(fragment, map: map))
        XCTAssertEqual(Array(out[20...]), data, "a later fragment has no UDP header to touch")
        XCTAssertEqual(Array(out[4..<8]), Array(fragment[4..<8]), "ID and offset kept")
        XCTAssertEqual(PacketSynthesizer.checksum(Array(out[0..<20])), 0)
    }

    func testGarbageIsRefusedNotCrashed() {
        XCTAssertNil(PacketRewriter.rewrite([], map: map))
        XCTAssertNil(PacketRewriter.rewrite([0x45, 0, 0], map: map))
        // IPv6 whose addresses the (IPv4) map does not name: left as recorded (IPv6ReplayTests maps them).
        let v6 = P.ipv6(P.a6, P.b6, proto: 17, P.udp(1, 2, []))
        XCTAssertEqual(PacketRewriter.rewrite(v6, map: map), v6)
        XCTAssertNil(PacketRewriter.rewrite([0x4f] + [UInt8](repeating: 0, count: 30), map: map), "IHL 60 on 31 bytes")
    }

    // MARK: - Comparison

    /// What one router does: TTL - 1 and the header checksum recomputed.
    func routed(_ packet: [UInt8], hops: Int = 1) -> [UInt8] {
        var p = packet
        p[8] -= UInt8(hops)
        p[10] = 0
        p[11] = 0
        let sum = PacketSynthesizer.checksum(Array(p[0..<20]))
        p[10] = UInt8(sum >> 8)
        p[11] = UInt8(sum & 0xff)
        return p
    }

    func testComparisonAllowsOnlyTheRoutersChanges() {
        let sent = PacketSynthesizer(client: endpoint(newA, 1), server: endpoint(newB, 2))!.datagram(from: .fromInitiator, [1, 2, 3, 4])
        XCTAssertNil(PacketComparison.firstDifference(sent: sent, received: routed(sent), hops: 1))
        XCTAssertEqual(PacketComparison.firstDifference(sent: sent, received: sent, hops: 1), 8, "TTL not lowered")
        XCTAssertEqual(PacketComparison.firstDifference(sent: sent, received: routed(sent, hops: 2), hops: 1), 8)
        var payload = routed(sent)
        payload[30] ^= 1
        XCTAssertEqual(PacketComparison.firstDifference(sent: sent, received: payload, hops: 1), 30)
        var badSum = routed(sent)
        badSum[11] ^= 1
        XCTAssertEqual(PacketComparison.firstDifference(sent: sent, received: badSum, hops: 1), 10, "invalid header checksum")
        var id = routed(sent)
        id[5] ^= 1
        XCTAssertEqual(PacketComparison.firstDifference(sent: sent, received: id, hops: 1), 5, "identification must survive")
        XCTAssertEqual(PacketComparison.firstDifference(sent: sent, received: Array(routed(sent).prefix(25)), hops: 1), 25)
    }

    func testMatchingCountsLostAndUnplannedPackets() {
        let s = PacketSynthesizer(client: endpoint(newA, 1), server: endpoint(newB, 2))!
        let sent = (0..<5).map { s.datagram(from: .fromInitiator, [UInt8($0)]) }
        let stranger = s.datagram(from: .fromInitiator, [99])
        // Packet 2 lost, a stranger in its place, packet 4 twice.
        let received = [sent[0], sent[1], stranger, sent[3], sent[4], sent[4]].map { routed($0) }
        let (outcomes, unexpected) = PacketComparison.match(expected: sent, received: received, hops: 1)
        XCTAssertEqual(outcomes.map(\.matched), [0, 1, nil, 3, 4])
        XCTAssertEqual(outcomes[2].difference, 26, "the stranger differs from packet 2 first at its UDP checksum")
        XCTAssertEqual(unexpected, [2, 5])
    }

    /// Whatever arrives on the capture side (empty, a lone byte, a header with a bogus length, bytes
    /// of random content) is an unplanned packet, never a crash or a match.
    func testGarbageArrivingIsUnplanned() {
        let sent = [PacketSynthesizer(client: endpoint(newA, 1), server: endpoint(newB, 2))!.datagram(from: .fromInitiator, [7])]
        var generator = SystemRandomNumberGenerator()
        var garbage: [[UInt8]] = [[], [0x45], [0x4f, 0, 0xff, 0xff], [UInt8](repeating: 0, count: 19)]
        for length in [1, 8, 20, 29, 60, 200] {
            garbage.append((0..<length).map { _ in UInt8.random(in: 0...255, using: &generator) })
        }
        let (outcomes, unexpected) = PacketComparison.match(expected: sent, received: garbage, hops: 1)
        XCTAssertEqual(outcomes.map(\.matched), [nil])
        XCTAssertEqual(unexpected, Array(garbage.indices))
        for g in garbage { XCTAssertNotNil(PacketComparison.firstDifference(sent: sent[0], received: g, hops: 1)) }
    }

    // MARK: - The plan, on the project's own recordings

    func testPlanOfFragmentsAndICMPErrors() throws {
        let records = try PcapFileReader.readAll(path: P.capturesDirectory + "/frag-ping-udp.pcap")
        let plan = PacketPlan(records: records, mtu: 1_400, hops: 1)
        XCTAssertEqual(plan.conversations.map(\.transport), [.icmp, .udp])
        XCTAssertEqual(plan.conversations.map(\.packets.count), [10, 3], "echo fragments and port unreachables; UDP fragments")
        XCTAssertTrue(plan.conversations.allSatisfy { $0.skipReason == nil })
        let a = IPAddress("192.168.77.50")!
        let b = IPAddress("192.168.77.10")!
        let sent = plan.packets(from: .fromInitiator, initiator: a, responder: b)
        XCTAssertEqual(sent.count, 7)
        // Replayed "through one router", every packet matches; with one dropped, its conversation says so.
        let check = plan.check(direction: .fromInitiator, sent: sent, received: sent.map { routed($0.bytes) }, hops: 1, capture: "f")
        XCTAssertFalse(check.report.failed)
        XCTAssertEqual(check.report.ok, 2)
        var lossy = sent.map { routed($0.bytes) }
        lossy.remove(at: 1)
        let lost = plan.check(direction: .fromInitiator, sent: sent, received: lossy, hops: 1, capture: "f")
        XCTAssertTrue(lost.report.failed)
        XCTAssertEqual(lost.report.flows[0].directions[0].deliveredPackets, 3)
        // The offset runs over the conversation's packets: the packet after the lost one stands in its
        // place and differs at the total length (byte 2).
        XCTAssertEqual(lost.report.flows[0].directions[0].firstDifference, sent[0].bytes.count + 2)
        // A smaller MTU skips what does not fit, by name.
        let small = PacketPlan(records: records, mtu: 1_000, hops: 1)
        XCTAssertTrue(small.conversations[0].skipReason?.contains("larger than the tunnel's MTU of 1000") == true)
    }

    /// The other IP version than the lab's addresses is skipped with the reason; TCP is replayed
    /// (its SYNs' MSS clamp is allowed by the comparison), unless a segment is too large for the MTU.
    func testPlanSkipsTheOtherIPVersionAndOversizeTCPWithTheReason() throws {
        let ping = PacketPlan(records: try PcapFileReader.readAll(path: P.capturesDirectory + "/ping-any.pcap"), mtu: 1_400, hops: 1)
        XCTAssertNil(ping.conversations[0].skipReason)
        XCTAssertFalse(ping.conversations.dropFirst().isEmpty)
        for conversation in ping.conversations.dropFirst() {
            XCTAssertEqual(conversation.skipReason, "IPv6: the lab's addresses (--rewrite) are IPv4; give IPv6 ones to replay it")
        }
        let http = PacketPlan(records: try PcapFileReader.readAll(path: P.capturesDirectory + "/http-curl.pcap"), mtu: 1_400, hops: 1)
        XCTAssertEqual(http.conversations.map(\.transport), [.tcp])
        let reason = http.conversations[0].skipReason
        XCTAssertTrue(reason == nil || reason!.contains("larger than the tunnel's MTU of 1400"), "\(reason ?? "")")
        let big = PacketPlan(records: try PcapFileReader.readAll(path: P.capturesDirectory + "/http-curl.pcap"), mtu: 65_535, hops: 1)
        XCTAssertNil(big.conversations[0].skipReason, "TCP itself is replayed")
        XCTAssertFalse(big.packets(from: .fromInitiator, initiator: IPAddress("1.1.1.1")!, responder: IPAddress("2.2.2.2")!).isEmpty)
    }

    /// With nothing to inject the plan says why, for the injecting end (it printed a bare "sent 0
    /// packets"): every conversation skipped, with each reason; none from that side; no IP at all.
    func testNothingToSendSaysWhy() throws {
        let http = PacketPlan(records: try PcapFileReader.readAll(path: P.capturesDirectory + "/http-curl.pcap"), mtu: 1_000, hops: 1)
        let a = IPAddress("192.168.77.50")!
        let b = IPAddress("192.168.77.10")!
        XCTAssertTrue(http.packets(from: .fromInitiator, initiator: a, responder: b).isEmpty)
        let why = http.nothingToSend(from: .fromInitiator)
        XCTAssertTrue(why.hasPrefix("every conversation is skipped: conversation 1 (tcp "), why)
        XCTAssertTrue(why.hasSuffix("is larger than the tunnel's MTU of 1000"), why)
        let v6 = PacketPlan(
            records: try PcapFileReader.readAll(path: P.capturesDirectory + "/ping-any.pcap").filter { record in
                guard case .ip(let offset)? = try? record.linkType.payload(of: record.bytes) else { return false }
                return record.bytes[offset] >> 4 == 6
            }, mtu: 1_400, hops: 1)
        XCTAssertTrue(v6.nothingToSend(from: .fromResponder).contains("IPv6: the lab's addresses (--rewrite) are IPv4"))
        XCTAssertEqual(
            PacketPlan(records: [], mtu: 1_400, hops: 1).nothingToSend(from: .fromInitiator),
            "the capture holds no TCP, UDP or ICMP packet to replay (0 frames without one)")
    }
}
