import PosternCore
import XCTest

final class LoopPinningTests: XCTestCase {
    /// Every forward shape runs on its session's loop: none keeps the sessions on the control loop.
    func testEveryForwardSpreads() throws {
        let forwards = try [
            "tcp:0.0.0.0:8080=acme/192.168.77.10:80", "tcp:acme/0.0.0.0:9000=127.0.0.1:22", "udp:0.0.0.0:5353=acme/192.168.77.10:53",
            "udp:acme/0.0.0.0:5000=127.0.0.1:5000", "udp:[::]:5353=acme/[fd00::10]:53",
        ].map { try ForwardSpec(parsing: $0) }
        for spec in forwards { XCTAssertNil(LoopPinning.reason(for: spec), spec.text) }
        XCTAssertEqual(LoopPinning.reasons(forwards: forwards, socksListeners: 0, tun: false, pcap: false), [])
        XCTAssertTrue(
            LoopPinning.spreads(threads: 4, reasons: LoopPinning.reasons(forwards: forwards, socksListeners: 0, tun: false, pcap: false)))
    }

    func testEachPinningFeatureIsNamed() throws {
        let tcp = try ForwardSpec(parsing: "tcp:0.0.0.0:8080=acme/192.168.77.10:80")
        let udp = try ForwardSpec(parsing: "udp:0.0.0.0:5353=acme/192.168.77.10:53")
        XCTAssertEqual(LoopPinning.reasons(forwards: [tcp], socksListeners: 0, tun: false, pcap: false), [])
        let all = LoopPinning.reasons(forwards: [tcp, udp], socksListeners: 1, tun: true, pcap: true)
        XCTAssertEqual(all.count, 3, "\(all)")
        XCTAssertTrue(all.contains("SOCKS5 listeners whose accounts may choose another mediator"))
        XCTAssertTrue(all.contains("TUN mode (--tun)"))
        XCTAssertTrue(all.contains("--pcap"))
    }

    func testSpreadsOnlyWithSeveralLoopsAndNothingPinning() {
        XCTAssertFalse(LoopPinning.spreads(threads: 1, reasons: []))
        XCTAssertTrue(LoopPinning.spreads(threads: 2, reasons: []))
        XCTAssertFalse(LoopPinning.spreads(threads: 8, reasons: ["--pcap"]))
    }

    func testAcceptingLoopIsTheSessionsOrTheControlLoop() {
        XCTAssertEqual(LoopPinning.acceptingLoop(sessionLoop: nil, loops: 4), 0)
        XCTAssertEqual(LoopPinning.acceptingLoop(sessionLoop: 3, loops: 4), 3)
        // A loop the server does not have (a foreign loop) is never steered to.
        XCTAssertEqual(LoopPinning.acceptingLoop(sessionLoop: 4, loops: 4), 0)
        XCTAssertEqual(LoopPinning.acceptingLoop(sessionLoop: -1, loops: 4), 0)
    }
}
