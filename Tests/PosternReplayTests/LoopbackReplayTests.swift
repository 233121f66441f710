import NIOCore
import PosternCapture
import PosternPcap
import PosternReplay
import XCTest

/// Both sides of a replay on loopback, without a tunnel: every complete TCP and UDP flow of real
/// captures arrives as recorded (FIN, RST and refused endings included), and a responder that reads
/// another capture is refused by digest. The lab test (Tests/lab/t_replay.sh) does the same through
/// the NAT and the tunnel.
final class LoopbackReplayTests: XCTestCase {
    static var captures: String {
        var parts = "\(#filePath)".split(separator: "/", omittingEmptySubsequences: false)
        parts.removeLast(3)
        return parts.joined(separator: "/") + "/captures"
    }

    /// The third-party captures are a link to `../shared/captures` beside the clone; skip, saying
    /// so, where that folder is absent.
    static func requireThirdParty() throws {
        guard FileManager.default.fileExists(atPath: captures + "/third-party/MANIFEST.tsv") else {
            throw XCTSkip("the shared captures (../shared/captures beside the clone) are absent")
        }
    }

    /// A free port pair: the data port and the next one for control.
    func ports() -> Int { 20_000 + Int.random(in: 0..<10_000) * 2 }

    func replay(_ initiatorFile: String, responderFile: String? = nil) async throws -> ReplayReport {
        let port = ports()
        let listen = try SocketAddress(ipAddress: "127.0.0.1", port: port)
        let control = try SocketAddress(ipAddress: "127.0.0.1", port: port + 1)
        let responder = ReplayResponder(
            summary: try PcapFileReader.flows(path: Self.captures + "/" + (responderFile ?? initiatorFile)), listen: listen,
            control: control,
            mode: .fast, timeout: .seconds(10), log: { _ in })
        let serving = Task { try await responder.run() }
        defer {
            responder.stop()
            serving.cancel()
        }
        try await Task.sleep(nanoseconds: 300_000_000)
        let initiator = ReplayInitiator(
            summary: try PcapFileReader.flows(path: Self.captures + "/" + initiatorFile), capture: initiatorFile, target: listen,
            datagramTarget: listen, control: control, mode: .fast, timeout: .seconds(10), parallel: 8, progress: nil)
        return try await initiator.run()
    }

    func testRealCapturesReplayOverLoopback() async throws {
        try Self.requireThirdParty()
        for file in [
            "third-party/web-http-refused.pcap", "third-party/http-ssh-rst-nsec.pcap", "third-party/dns-udp-queries.pcap",
            "third-party/tftp-rrq.pcap",
        ] {
            let report = try await replay(file)
            XCTAssertFalse(report.failed, report.text)
            XCTAssertEqual(report.mismatched, 0, report.text)
            XCTAssertGreaterThan(report.ok, 0, report.text)
            for flow in report.flows where flow.status == .ok {
                XCTAssertEqual(flow.directions.count, 2)
                for d in flow.directions {
                    XCTAssertEqual(d.receivedBytes, d.expectedBytes, flow.line)
                    XCTAssertEqual(d.deliveredPackets, d.expectedPackets, flow.line)
                }
            }
        }
    }

    func testResponderOfAnotherCaptureIsRefused() async throws {
        try Self.requireThirdParty()
        do {
            let report = try await replay("third-party/http-get.pcap", responderFile: "third-party/dns-over-tcp.pcap")
            XCTFail("replayed against another capture: \(report.text)")
        } catch let failure as ReplayFailure {
            XCTAssertTrue(failure.reason.contains("same file"), failure.reason)
        }
    }
}

/// A forged control peer against the responder: wrong digest, unknown flows, junk, an endless line.
/// Each gets an error or the connection closed, and a real replay still works afterwards.
final class ResponderAbuseTests: XCTestCase {
    func testForgedControlInputThenARealReplay() async throws {
        try LoopbackReplayTests.requireThirdParty()
        let file = LoopbackReplayTests.captures + "/third-party/dns-over-tcp.pcap"
        let port = 20_000 + Int.random(in: 0..<10_000) * 2
        let listen = try SocketAddress(ipAddress: "127.0.0.1", port: port)
        let control = try SocketAddress(ipAddress: "127.0.0.1", port: port + 1)
        let summary = try PcapFileReader.flows(path: file)
        let responder = ReplayResponder(
            summary: summary, listen: listen, control: control, mode: .fast, timeout: .seconds(5), log: { _ in })
        let serving = Task { try await responder.run() }
        defer {
            responder.stop()
            serving.cancel()
        }
        try await Task.sleep(nanoseconds: 300_000_000)

        let answers = try Self.exchange(port: port + 1, send: "HELLO 0000\nNEXT 999\nNEXT x\nBOGUS\nDONE\n", lines: 5)
        XCTAssertTrue(answers[0].hasPrefix("ERR "), "\(answers)")
        XCTAssertTrue(answers[1].hasPrefix("ERR no replayable flow 999"), "\(answers)")
        XCTAssertTrue(answers[2].hasPrefix("ERR no replayable flow x"), "\(answers)")
        XCTAssertTrue(answers[3].hasPrefix("ERR unknown"), "\(answers)")
        XCTAssertEqual(answers[4], "END")
        // An endless line: the responder closes the connection instead of buffering it.
        let closed = try Self.exchange(port: port + 1, send: String(repeating: "A", count: 1 << 21), lines: 1)
        XCTAssertEqual(closed, [], "an over-long control line was answered")
        // A stray data connection and a stray datagram (no flow announced): dropped.
        _ = try Self.exchange(port: port, send: "stray\n", lines: 1)

        let report = try await ReplayInitiator(
            summary: summary, capture: file, target: listen, datagramTarget: listen, control: control, mode: .fast, timeout: .seconds(5),
            parallel: 4, progress: nil
        ).run()
        XCTAssertEqual(report.ok, 1, report.text)
    }

    /// Blocking client: sends `send`, reads up to `lines` lines until EOF or 3 s.
    static func exchange(port: Int, send: String, lines: Int) throws -> [String] {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw POSIXError(.EIO) }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { throw POSIXError(.ECONNREFUSED) }
        var timeout = timeval(tv_sec: 3, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let bytes = Array(send.utf8)
        var sent = 0
        while sent < bytes.count {
            let n = bytes[sent...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { break }
            sent += n
        }
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while received.filter({ $0 == 10 }).count < lines {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { break }
            received += buffer[0..<n]
        }
        return String(decoding: received, as: UTF8.self).split(separator: "\n").map(String.init)
    }
}
