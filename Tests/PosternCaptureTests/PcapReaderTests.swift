import PosternCapture
import PosternPcap
import PosternWire
import XCTest

/// The libpcap reader over every format and link type: files written here with libpcap, hand-made
/// damaged files, and the real third-party captures in captures/third-party (checked against their
/// MANIFEST, so the facts come from outside this code).
final class PcapReaderTests: XCTestCase {
    /// Made on first use: XCTest makes instances it never runs, and those must leave nothing behind.
    private var madeDirectory: String?
    var dir: String {
        if let madeDirectory { return madeDirectory }
        let made = TestPackets.directory()
        madeDirectory = made
        return made
    }

    override func tearDown() {
        if let madeDirectory { TestPackets.remove(madeDirectory) }
        super.tearDown()
    }

    func udpFlows(_ path: String) throws -> [Flow] {
        try PcapFileReader.flows(path: path).flows.filter { $0.transport == .udp }
    }

    func testEveryLinkTypeCarriesIPv4AndIPv6() throws {
        let payload = Array("hello through every link".utf8)
        for link in [LinkType.ethernet, .linuxSLL, .linuxSLL2, .raw, .ipv4, .ipv6, .null, .loop] {
            for v6 in [false, true] {
                if link == .ipv4 && v6 || link == .ipv6 && !v6 { continue }
                let ip =
                    v6
                    ? TestPackets.ipv6(TestPackets.a6, TestPackets.b6, proto: 17, TestPackets.udp(5000, 53, payload))
                    : TestPackets.ipv4(TestPackets.a4, TestPackets.b4, proto: 17, TestPackets.udp(5000, 53, payload))
                let path = "\(dir)/\(link.rawValue)-\(v6).pcap"
                try TestPackets.write([TestPackets.frame(ip, link)], link, to: path)
                let flows = try udpFlows(path)
                XCTAssertEqual(flows.count, 1, "\(link) v6=\(v6)")
                XCTAssertEqual(flows.first?.bytes(from: .fromInitiator), payload, "\(link) v6=\(v6)")
                XCTAssertEqual(flows.first?.responder.port, 53)
                XCTAssertEqual(
                    flows.first?.initiator.description.contains(v6 ? "fd00::1" : "10.0.0.1"), true,
                    "\(link): \(flows.first?.initiator.description ?? "")")
            }
        }
    }

    func testVLANTaggedEthernetAndPadding() throws {
        let payload = Array("tagged".utf8)
        let ip = TestPackets.ipv4(TestPackets.a4, TestPackets.b4, proto: 17, TestPackets.udp(1, 2, payload))
        // Two tags (QinQ) and Ethernet padding after the IP packet: the padding is not payload.
        let frame = TestPackets.frame(ip, .ethernet, vlanTags: 2) + [0, 0, 0, 0, 0, 0]
        let path = "\(dir)/vlan.pcap"
        try TestPackets.write([frame], .ethernet, to: path)
        XCTAssertEqual(try udpFlows(path).first?.bytes(from: .fromInitiator), payload)
    }

    func testMicrosecondAndNanosecondTimestamps() throws {
        let ip = TestPackets.ipv4(TestPackets.a4, TestPackets.b4, proto: 17, TestPackets.udp(1, 2, [1]))
        for nano in [false, true] {
            let path = "\(dir)/time-\(nano).pcap"
            try TestPackets.write([ip, ip], .raw, to: path, nanoseconds: nano)
            let records = try PcapFileReader.readAll(path: path)
            XCTAssertEqual(records.count, 2)
            XCTAssertEqual(records[0].time, nano ? 1_700_000_000_123_456_789 : 1_700_000_000_123_456_000)
            XCTAssertEqual(records[1].time - records[0].time, 1_000_000)
            XCTAssertEqual(records.map(\.number), [1, 2])
        }
    }

    func testUnsupportedLinkTypeNamesFileAndType() throws {
        let path = "\(dir)/wifi.pcap"
        TestPackets.writeBytes(TestPackets.pcapHeader(linkType: 105) + TestPackets.pcapRecord([1, 2, 3]), to: path)
        XCTAssertThrowsError(try PcapFileReader(path: path)) { error in
            let text = "\(error)"
            XCTAssertTrue(text.hasPrefix(path + ": "), text)
            XCTAssertTrue(text.contains("link type 105"), text)
            XCTAssertTrue(text.contains("not supported"), text)
        }
    }

    func testMissingAndEmptyAndForeignFiles() throws {
        XCTAssertThrowsError(try PcapFileReader(path: "\(dir)/none.pcap")) {
            XCTAssertTrue("\($0)".contains("\(self.dir)/none.pcap"), "\($0)")
        }
        TestPackets.writeBytes([], to: "\(dir)/empty.pcap")
        XCTAssertThrowsError(try PcapFileReader(path: "\(dir)/empty.pcap"))
        TestPackets.writeBytes(Array("GET / HTTP/1.1\r\nHost: x\r\n\r\n".utf8), to: "\(dir)/text.pcap")
        XCTAssertThrowsError(try PcapFileReader(path: "\(dir)/text.pcap")) { XCTAssertTrue("\($0)".contains("text.pcap"), "\($0)") }
    }

    func testRecordLongerThanTheFileIsAnErrorNamingThePacket() throws {
        let ip = TestPackets.ipv4(TestPackets.a4, TestPackets.b4, proto: 17, TestPackets.udp(1, 2, [1, 2, 3]))
        var bytes = TestPackets.pcapHeader(linkType: 101) + TestPackets.pcapRecord(ip) + TestPackets.pcapRecord(ip)
        bytes.removeLast(5)
        let path = "\(dir)/cut.pcap"
        TestPackets.writeBytes(bytes, to: path)
        let reader = try PcapFileReader(path: path)
        XCTAssertNotNil(try reader.next())
        XCTAssertThrowsError(try reader.next()) { error in
            let e = error as? CaptureError
            XCTAssertEqual(e?.packet, 2, "\(error)")
            XCTAssertEqual(e?.file, path)
            XCTAssertFalse(e?.reason.isEmpty ?? true)
        }
        // A record claiming more bytes than any packet may have is refused, not allocated.
        let huge = TestPackets.pcapHeader(linkType: 101) + TestPackets.pcapRecord(ip, caplen: 0x7fff_ffff)
        TestPackets.writeBytes(huge, to: "\(dir)/huge.pcap")
        XCTAssertThrowsError(try PcapFileReader.readAll(path: "\(dir)/huge.pcap")) {
            XCTAssertEqual(($0 as? CaptureError)?.packet, 1, "\($0)")
        }
    }

    func testSnapshotLengthCutPacketsMakeTheirFlowIncomplete() throws {
        let ip = TestPackets.ipv4(TestPackets.a4, TestPackets.b4, proto: 17, TestPackets.udp(1, 2, [UInt8](repeating: 7, count: 100)))
        let bytes = TestPackets.pcapHeader(linkType: 101, snaplen: 60) + TestPackets.pcapRecord(Array(ip.prefix(60)), len: ip.count)
        let path = "\(dir)/snap.pcap"
        TestPackets.writeBytes(bytes, to: path)
        let flow = try XCTUnwrap(try udpFlows(path).first)
        XCTAssertFalse(flow.isComplete)
        XCTAssertNotNil(ReplayReport.skipReason(flow))
    }

    // MARK: - The real captures in captures/third-party

    struct ManifestRow {
        var file: String
        var packets: Int
        var linktype: String
    }

    func manifest() throws -> [ManifestRow] {
        try TestPackets.requireThirdParty()
        let text = String(decoding: TestPackets.readBytes(TestPackets.capturesDirectory + "/third-party/MANIFEST.tsv"), as: UTF8.self)
        let lines = text.split(separator: "\n").dropFirst()
        return lines.map { line in
            let cells = line.split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
            return ManifestRow(file: cells[0], packets: Int(cells[7])!, linktype: cells[6])
        }
    }

    func testThirdPartyCapturesReadWithTheirManifestPacketCounts() throws {
        let rows = try manifest()
        XCTAssertGreaterThanOrEqual(rows.count, 20)
        var linkTypes: Set<LinkType> = []
        for row in rows {
            let path = TestPackets.capturesDirectory + "/third-party/" + row.file
            let reader = try PcapFileReader(path: path)
            linkTypes.insert(reader.linkType)
            var count = 0
            while let record = try reader.next() {
                count += 1
                XCTAssertGreaterThan(record.time, 631_152_000_000_000_000, "\(row.file) packet \(count): time before 1990")
            }
            XCTAssertEqual(count, row.packets, row.file)
            let summary = try PcapFileReader.flows(path: path)
            XCTAssertEqual(summary.packets, row.packets)
            XCTAssertEqual(summary.undecodableCount, row.file == "dns-ipv6-frag.pcap" ? 1 : 0, "\(row.file): \(summary.undecodable)")
        }
        XCTAssertEqual(linkTypes, [.ethernet, .linuxSLL, .linuxSLL2, .raw])
    }

    /// Every capture cut at several offsets (inside the file header, inside a record header, inside a
    /// packet, one byte short): either an error naming the file (and the packet when past the file
    /// header) or fewer packets; never a crash.
    func testEveryCaptureCutAtSeveralOffsets() throws {
        for row in try manifest() {
            let whole = TestPackets.readBytes(TestPackets.capturesDirectory + "/third-party/" + row.file)
            let offsets = Set([0, 1, 4, 10, 23, 24, 25, 30, 39, 40, 41, 60, 100, whole.count / 3, whole.count / 2, whole.count - 1])
            for offset in offsets.sorted() where offset < whole.count {
                let path = "\(dir)/cut-\(offset)-\(row.file)"
                TestPackets.writeBytes(Array(whole.prefix(offset)), to: path)
                do {
                    let summary = try PcapFileReader.flows(path: path)
                    XCTAssertLessThan(summary.packets, row.packets, "\(row.file) cut at \(offset) still had every packet")
                } catch {
                    XCTAssertEqual(error.file, path)
                    XCTAssertFalse(error.reason.isEmpty)
                }
            }
        }
    }

    /// Flipped bytes in the middle of real captures: errors or odd packets, never a crash.
    func testCorruptedBytesNeverCrash() throws {
        for row in try manifest() {
            var bytes = TestPackets.readBytes(TestPackets.capturesDirectory + "/third-party/" + row.file)
            var seed: UInt64 = 0x1234_5678
            for _ in 0..<max(8, bytes.count / 64) {
                seed = seed &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
                let at = 24 + Int(seed >> 33) % max(1, bytes.count - 24)
                if at < bytes.count { bytes[at] ^= UInt8(truncatingIfNeeded: seed >> 13) | 1 }
            }
            let path = "\(dir)/corrupt-\(row.file)"
            TestPackets.writeBytes(bytes, to: path)
            do {
                _ = try PcapFileReader.flows(path: path)
            } catch {
                XCTAssertEqual(error.file, path)
            }
        }
    }
}
