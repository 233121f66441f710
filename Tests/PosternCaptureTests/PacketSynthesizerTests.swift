import PosternCapture
import PosternPcap
import PosternWire
import XCTest

/// Packets made up from streams (`--pcap`): valid checksums, and read back by the capture reader as
/// the same bytes with the same ending; the recorder rotates by size and keeps a bounded number of files.
final class PacketSynthesizerTests: XCTestCase {
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

    func connection(_ client: String, _ server: String) -> PacketSynthesizer {
        PacketSynthesizer(client: Endpoint(IPAddress(client)!, 40_000), server: Endpoint(IPAddress(server)!, 8080))!
    }

    func testConnectionReadsBackAsTheSameBytesAndEnding() throws {
        for (client, server) in [("203.0.113.20", "203.0.113.10"), ("2001:db8::20", "2001:db8::10")] {
            var s = connection(client, server)
            let request = Array("GET / HTTP/1.1\r\n\r\n".utf8)
            let response = (0..<5000).map { UInt8(truncatingIfNeeded: $0 * 13) }
            var packets = s.open()
            packets += s.data(from: .fromInitiator, request)
            packets += s.data(from: .fromResponder, response)
            packets.append(s.fin(from: .fromResponder))
            packets.append(s.fin(from: .fromInitiator))
            for packet in packets { XCTAssertTrue(Self.checksumsHold(packet), "bad checksum in \(packet.prefix(60))") }
            let path = "\(dir)/conn-\(client).pcap"
            let recorder = try PcapRecorder(path: path, maxBytes: 1 << 20, maxFiles: 2)
            for (i, packet) in packets.enumerated() { recorder.write(packet, time: 1_700_000_000_000_000_000 + Int64(i)) }
            recorder.close()
            let flows = try PcapFileReader.flows(path: path).flows
            XCTAssertEqual(flows.count, 1)
            XCTAssertEqual(flows[0].bytes(from: .fromInitiator), request)
            XCTAssertEqual(flows[0].bytes(from: .fromResponder), response)
            XCTAssertEqual(flows[0].ending, .closed)
            XCTAssertTrue(flows[0].isComplete, "\(flows[0].incomplete)")
            XCTAssertEqual(flows[0].packets(from: .fromResponder), 4)  // 5000 bytes in 1460-byte segments
        }
    }

    func testResetAndDatagram() throws {
        var s = connection("10.1.1.1", "10.1.1.2")
        var packets = s.open()
        packets += s.data(from: .fromInitiator, [1, 2, 3])
        packets.append(s.reset(from: .fromResponder))
        packets.append(s.datagram(from: .fromInitiator, [9, 8, 7]))
        for packet in packets { XCTAssertTrue(Self.checksumsHold(packet)) }
        let flows = CaptureSummary(
            records: packets.enumerated().map {
                CaptureRecord(number: $0.offset + 1, time: 0, linkType: .raw, bytes: $0.element, originalLength: $0.element.count)
            }
        ).flows
        XCTAssertEqual(flows.map(\.transport), [.tcp, .udp])
        XCTAssertEqual(flows[0].ending, .reset(by: .fromResponder))
        XCTAssertEqual(flows[1].bytes(from: .fromInitiator), [9, 8, 7])
    }

    func testMixedFamiliesAndNamesAreRefused() {
        XCTAssertNil(PacketSynthesizer(client: Endpoint(IPAddress("10.0.0.1")!, 1), server: Endpoint(IPAddress("2001:db8::2")!, 2)))
        XCTAssertNil(PacketSynthesizer(client: Endpoint(host: Host("example.test"), port: 1), server: Endpoint(IPAddress("10.0.0.1")!, 2)))
        // An IPv4-mapped address is the IPv4 address it carries.
        XCTAssertNotNil(PacketSynthesizer(client: Endpoint(IPAddress("::ffff:10.0.0.1")!, 1), server: Endpoint(IPAddress("10.0.0.2")!, 2)))
    }

    func testRecorderRotatesAndKeepsAtMostMaxFiles() throws {
        let path = "\(dir)/rot.pcap"
        let recorder = try PcapRecorder(path: path, maxBytes: 2000, maxFiles: 3)
        let packet = connection("10.0.0.1", "10.0.0.2").datagram(from: .fromInitiator, [UInt8](repeating: 1, count: 400))
        for i in 0..<40 { recorder.write(packet, time: Int64(i)) }
        recorder.close()
        XCTAssertEqual(recorder.packets, 40)
        var total = 0
        for name in [path, path + ".1", path + ".2"] {
            let bytes = TestPackets.readBytes(name)
            XCTAssertLessThanOrEqual(bytes.count, 2000, name)
            total += try PcapFileReader.readAll(path: name).count
        }
        XCTAssertLessThan(total, 40)  // the oldest went
        XCTAssertEqual(access(path + ".3", F_OK), -1)
    }

    /// `stopAtLimit` (ctl capture): one file, never past the limit, whole packets only; the packet that
    /// would cross it and all after are dropped and counted, `onFull` once; what was written reads back.
    func testRecorderStoppingAtItsLimitNeverRotates() throws {
        let path = "\(dir)/full.pcap"
        let recorder = try PcapRecorder(path: path, maxBytes: 2000, maxFiles: 1, stopAtLimit: true)
        var full = 0
        recorder.onFull = { full += 1 }
        let packet = connection("10.0.0.1", "10.0.0.2").datagram(from: .fromInitiator, [UInt8](repeating: 1, count: 400))
        for i in 0..<40 { recorder.write(packet, time: Int64(i)) }
        XCTAssertTrue(recorder.isFull)
        XCTAssertEqual(full, 1)
        // 24 + 4 × (16 + 428) = 1800 fits; a fifth would make 2244.
        XCTAssertEqual(recorder.packets, 4)
        XCTAssertEqual(recorder.dropped, 36)
        XCTAssertEqual(recorder.bytesWritten, 1_800)
        recorder.close()
        XCTAssertEqual(TestPackets.readBytes(path).count, 1_800)
        XCTAssertEqual(try PcapFileReader.readAll(path: path).map(\.bytes), [[UInt8]](repeating: packet, count: 4))
        XCTAssertEqual(access(path + ".1", F_OK), -1, "never rotated")
    }

    /// IPv4 header checksum and the TCP/UDP checksum over the pseudo-header both sum to zero.
    static func checksumsHold(_ packet: [UInt8]) -> Bool {
        let v6 = packet[0] >> 4 == 6
        let header = v6 ? 40 : Int(packet[0] & 15) * 4
        if !v6 && PacketSynthesizer.checksum(Array(packet[0..<header])) != 0 { return false }
        let proto = packet[v6 ? 6 : 9]
        let src = v6 ? Array(packet[8..<24]) : Array(packet[12..<16])
        let dst = v6 ? Array(packet[24..<40]) : Array(packet[16..<20])
        let body = Array(packet[header...])
        let pseudo =
            v6
            ? src + dst + TestPackets.be32(UInt32(body.count)) + [0, 0, 0, proto]
            : src + dst + [0, proto] + TestPackets.be16(body.count)
        return PacketSynthesizer.checksum(pseudo + body) == 0
    }
}
