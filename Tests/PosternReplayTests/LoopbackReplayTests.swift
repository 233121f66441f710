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
        do {
            let report = try await replay("third-party/http-get.pcap", responderFile: "third-party/dns-over-tcp.pcap")
            XCTFail("replayed against another capture: \(report.text)")
        } catch let failure as ReplayFailure {
            XCTAssertTrue(failure.reason.contains("same file"), failure.reason)
        }
    }
}
