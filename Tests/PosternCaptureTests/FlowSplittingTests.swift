import PosternCapture
import PosternPcap
import PosternWire
import XCTest

/// Flows from packets: TCP put in order through retransmissions, reordering, overlaps and wrapping
/// sequence numbers; endings; incomplete flows said to be so; UDP conversations; fragments.
final class FlowSplittingTests: XCTestCase {
    typealias P = TestPackets
    var number = 0

    func record(_ ip: [UInt8], time: Int64? = nil) -> CaptureRecord {
        number += 1
        return CaptureRecord(number: number, time: time ?? Int64(number) * 1000, linkType: .raw, bytes: ip, originalLength: ip.count)
    }

    func c2s(_ seq: UInt32, _ flags: UInt8, _ payload: [UInt8] = []) -> CaptureRecord {
        record(P.ipv4(P.a4, P.b4, proto: 6, P.tcp(40000, 80, seq: seq, flags: flags, payload)))
    }

    func s2c(_ seq: UInt32, _ flags: UInt8, _ payload: [UInt8] = []) -> CaptureRecord {
        record(P.ipv4(P.b4, P.a4, proto: 6, P.tcp(80, 40000, seq: seq, flags: flags, payload)))
    }

    let syn: UInt8 = 0x02
    let synAck: UInt8 = 0x12
    let ack: UInt8 = 0x10
    let finAck: UInt8 = 0x11
    let rstAck: UInt8 = 0x14

    func testRetransmittedReorderedAndOverlappingSegmentsGiveTheStreamInOrder() {
        let c: UInt32 = 0xffff_fff0  // the client's sequence numbers wrap past 2^32
        let s: UInt32 = 1000
        let request = Array("GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n".utf8)
        let body = (0..<3000).map { UInt8(truncatingIfNeeded: $0 * 7) }
        let records = [
            c2s(c, syn), s2c(s, synAck), c2s(c &+ 1, ack),
            c2s(c &+ 1, ack, Array(request[0..<10])),
            c2s(c &+ 1 &+ 20, ack, Array(request[20...])),  // early: waits for 10..<20
            c2s(c &+ 1, ack, Array(request[0..<10])),  // retransmission
            c2s(c &+ 1 &+ 5, ack, Array(request[5..<25])),  // overlaps both sides of the hole
            s2c(s + 1 + 1000, ack, Array(body[1000..<2000])),  // reordered response
            s2c(s + 1, ack, Array(body[0..<1000])),
            s2c(s + 1 + 2000, finAck, Array(body[2000...])),
            s2c(s + 1 + 1000, ack, Array(body[1000..<2000])),  // retransmitted after the FIN
            c2s(c &+ 1 &+ UInt32(request.count), finAck),
        ]
        let summary = CaptureSummary(records: records)
        XCTAssertEqual(summary.flows.count, 1)
        let flow = summary.flows[0]
        XCTAssertEqual(flow.bytes(from: .fromInitiator), request)
        XCTAssertEqual(flow.bytes(from: .fromResponder), body)
        XCTAssertEqual(flow.ending, .closed)
        XCTAssertTrue(flow.isComplete, "\(flow.incomplete)")
        XCTAssertEqual(flow.initiator, Endpoint(IPAddress("10.0.0.1")!, 40000))
        XCTAssertGreaterThanOrEqual(flow.retransmissions, 2)
        XCTAssertGreaterThanOrEqual(flow.outOfOrder, 2)
        // The responder's FIN comes after all its bytes, though its packet came before one of them.
        let kinds = flow.events.filter { $0.direction == .fromResponder }.map(\.kind)
        XCTAssertEqual(kinds.last, .fin)
    }

    func testGapMakesTheFlowIncomplete() {
        let records = [
            c2s(1, syn), s2c(100, synAck),
            c2s(2, ack, [1, 2, 3]),
            c2s(10, ack, [9, 9]),  // bytes 3..<8 never captured
            c2s(12, finAck), s2c(101, finAck),
        ]
        let flow = CaptureSummary(records: records).flows[0]
        XCTAssertFalse(flow.isComplete)
        XCTAssertTrue(flow.incomplete.joined().contains("missing after offset 3"), "\(flow.incomplete)")
        XCTAssertEqual(flow.bytes(from: .fromInitiator), [1, 2, 3])
        XCTAssertNotNil(ReplayReport.skipReason(flow))
    }

    func testNoHandshakeAndNoEndingAreIncomplete() {
        let midway = CaptureSummary(records: [c2s(50, ack, [1]), s2c(70, ack, [2]), c2s(51, finAck), s2c(71, finAck)]).flows[0]
        XCTAssertTrue(midway.incomplete.joined().contains("no SYN"), "\(midway.incomplete)")
        number = 0
        let open = CaptureSummary(records: [c2s(1, syn), s2c(9, synAck), c2s(2, ack, [1, 2])]).flows[0]
        XCTAssertEqual(open.ending, FlowEnding.none)
        XCTAssertTrue(open.incomplete.joined().contains("ends before the connection does"), "\(open.incomplete)")
    }

    func testRefusedResetAndPortReuse() {
        let records = [
            c2s(1, syn), s2c(0, rstAck),  // refused
            c2s(500, syn), s2c(900, synAck), c2s(501, ack, [7]), s2c(901, rstAck),  // same ports again: reset
        ]
        let flows = CaptureSummary(records: records).flows
        XCTAssertEqual(flows.count, 2)
        XCTAssertEqual(flows[0].ending, .refused)
        XCTAssertTrue(flows[0].isComplete, "\(flows[0].incomplete)")
        XCTAssertEqual(flows[1].ending, .reset(by: .fromResponder))
        XCTAssertEqual(flows[1].bytes(from: .fromInitiator), [7])
        XCTAssertTrue(flows[1].isComplete)
    }

    func testUDPConversationsAndInitiator() {
        let records = [
            record(P.ipv4(P.a4, P.b4, proto: 17, P.udp(3333, 53, [1]))),
            record(P.ipv4(P.b4, P.a4, proto: 17, P.udp(53, 3333, [2, 2]))),
            record(P.ipv4(P.a4, P.b4, proto: 17, P.udp(3333, 53, []))),
            record(P.ipv4(P.a4, P.b4, proto: 17, P.udp(3334, 53, [3]))),
        ]
        let flows = CaptureSummary(records: records).flows
        XCTAssertEqual(flows.count, 2)
        XCTAssertEqual(flows[0].packets(from: .fromInitiator), 2)
        XCTAssertEqual(flows[0].packets(from: .fromResponder), 1)
        XCTAssertEqual(flows[0].responder.port, 53)
        XCTAssertEqual(flows[1].initiator.port, 3334)
    }

    func testIPv4FragmentsOutOfOrderWithOverlapAreReassembled() {
        let payload = (0..<3000).map { UInt8(truncatingIfNeeded: $0) }
        let datagram = P.udp(7000, 69, payload)
        let pieces = [(1480, 2960, true), (1000, 2000, true), (2960, datagram.count, false), (0, 1480, true)]
        let records = pieces.map { start, end, more in
            record(P.ipv4(P.a4, P.b4, proto: 17, Array(datagram[start..<end]), fragment: (77, start, more)))
        }
        let summary = CaptureSummary(records: records)
        XCTAssertEqual(summary.flows.count, 1)
        XCTAssertEqual(summary.flows[0].bytes(from: .fromInitiator), payload)
        XCTAssertEqual(summary.undecodableCount, 0)
    }

    func testIPv6FragmentsAndExtensionHeaders() {
        let payload = (0..<2000).map { UInt8(truncatingIfNeeded: $0 * 3) }
        let datagram = P.udp(5353, 5353, payload)
        let records = [
            record(P.ipv6(P.a6, P.b6, proto: 17, Array(datagram[1232...]), hopByHop: true, fragment: (9, 1232, false))),
            record(P.ipv6(P.a6, P.b6, proto: 17, Array(datagram[..<1232]), hopByHop: true, fragment: (9, 0, true))),
            record(P.ipv6(P.a6, P.b6, proto: 17, P.udp(1, 2, [5]), hopByHop: true)),
        ]
        let flows = CaptureSummary(records: records).flows
        XCTAssertEqual(flows.count, 2)
        XCTAssertEqual(flows[0].bytes(from: .fromInitiator), payload)
        XCTAssertEqual(flows[1].bytes(from: .fromInitiator), [5])
    }

    func testMissingFragmentIsReportedNotGuessed() {
        let datagram = P.udp(1, 2, [UInt8](repeating: 1, count: 2000))
        let summary = CaptureSummary(records: [record(P.ipv4(P.a4, P.b4, proto: 17, Array(datagram[..<1480]), fragment: (5, 0, true)))])
        XCTAssertTrue(summary.flows.isEmpty)
        XCTAssertEqual(summary.undecodableCount, 1)
        XCTAssertTrue(summary.undecodable[0].contains("never completed"), summary.undecodable[0])
    }

    func testGarbageIPIsCountedNotFatal() {
        let summary = CaptureSummary(records: [
            record([0x45, 0, 0]), record([0x4f] + [UInt8](repeating: 0, count: 19)), record([0x70, 1, 2]),
        ])
        XCTAssertEqual(summary.undecodableCount, 3)
        XCTAssertTrue(summary.undecodable.allSatisfy { $0.hasPrefix("packet ") })
    }

    // MARK: - Real captures (facts from captures/third-party/MANIFEST.tsv)

    func flows(_ file: String) throws -> [Flow] {
        try TestPackets.requireThirdParty()
        return try PcapFileReader.flows(path: TestPackets.capturesDirectory + "/third-party/" + file).flows
    }

    func testThirdPartyTCPFlows() throws {
        let http = try flows("http-get.pcap")
        XCTAssertEqual(http.count, 1)
        XCTAssertEqual(http[0].ending, .closed)
        XCTAssertTrue(http[0].isComplete, "\(http[0].incomplete)")
        XCTAssertEqual(http[0].initiator.description, "141.142.228.5:\(http[0].initiator.port)")
        XCTAssertEqual(http[0].responder.description, "192.150.187.43:80")
        XCTAssertTrue(String(decoding: http[0].bytes(from: .fromInitiator), as: UTF8.self).hasPrefix("GET "))
        XCTAssertTrue(String(decoding: http[0].bytes(from: .fromResponder), as: UTF8.self).hasPrefix("HTTP/1.1 "))

        let web = try flows("web-http-refused.pcap").filter { $0.transport == .tcp }
        XCTAssertEqual(web.map(\.ending), [.refused, .closed])
        XCTAssertTrue(web.allSatisfy(\.isComplete))

        let rst = try flows("http-ssh-rst-nsec.pcap")
        XCTAssertEqual(rst.first?.ending, .reset(by: .fromResponder))
        XCTAssertTrue(String(decoding: rst[0].bytes(from: .fromResponder), as: UTF8.self).hasPrefix("SSH-"))

        let ftp = try flows("ftp-ipv6.pcap").filter { $0.transport == .tcp }
        XCTAssertEqual(ftp.count, 6)
        XCTAssertTrue(ftp.allSatisfy(\.isComplete), "\(ftp.map(\.incomplete))")

        let tls = try flows("tls-rawip.pcap")
        XCTAssertEqual(tls.count, 1)
        XCTAssertTrue(tls[0].isComplete, "\(tls[0].incomplete)")

        // 5 of 6 TCP flows complete; the HTTP one to 74.125.225.81 has no ending.
        let mixed = try flows("mixed-services.pcap").filter { $0.transport == .tcp }
        XCTAssertEqual(mixed.count, 6)
        XCTAssertEqual(mixed.filter(\.isComplete).count, 5)
        XCTAssertTrue(mixed.first { !$0.isComplete }!.responder.description.hasPrefix("74.125.225.81"))
    }

    func testThirdPartyUDPAndICMPFlows() throws {
        let dns = try flows("dns-udp-queries.pcap")
        XCTAssertEqual(dns.reduce(0) { $0 + $1.events.count }, 14)
        XCTAssertTrue(dns.allSatisfy { $0.transport == .udp && $0.isComplete && $0.responder.port == 53 })

        let multi = try flows("dns-multi-if.pcapng")
        XCTAssertEqual(multi.reduce(0) { $0 + $1.events.count }, 6)

        // The 3,230-byte answer to the retransmitted query is 3 fragments, reassembled; the first
        // answer to that query has only its last fragment, which names no ports: both flows between
        // these addresses are marked incomplete rather than one guessed.
        let frag = try flows("dns-ipv6-frag.pcap").filter { $0.transport == .udp }
        XCTAssertEqual(frag.count, 2)
        XCTAssertEqual(frag.map { $0.bytes(from: .fromResponder).count }, [323, 3230])
        XCTAssertEqual(frag[1].packets(from: .fromInitiator), 2)
        XCTAssertTrue(frag.allSatisfy { !$0.isComplete })

        let tftp = try flows("tftp-rrq.pcap")
        XCTAssertEqual(tftp.count, 2)
        XCTAssertEqual(tftp.reduce(0) { $0 + $1.events.count }, 99)

        let pings = try flows("icmp-echo-5.pcap")
        XCTAssertEqual(pings.count, 1)
        XCTAssertEqual(pings[0].summary, "echo")
        XCTAssertEqual(pings[0].packets(from: .fromInitiator), 5)
        XCTAssertEqual(pings[0].packets(from: .fromResponder), 5)
        XCTAssertNotNil(ReplayReport.skipReason(pings[0]))

        let sll2 = try flows("ping-sll2.pcap")
        XCTAssertEqual(sll2.filter { $0.transport == .icmp }.count, 2)
        let radius = try flows("radius-sll.pcap")
        XCTAssertEqual(radius.reduce(0) { $0 + $1.events.count }, 6)
    }
}
