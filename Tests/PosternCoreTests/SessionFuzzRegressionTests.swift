import Foundation
import NIOCore
import PosternCore
import PosternWire
import XCTest

/// The session fuzz driver (SessionFuzz/, the code the libFuzzer target runs) replayed without a
/// fuzzer: the committed seed corpus and every input that ever broke an invariant. A machine change
/// that breaks one fails here.
final class SessionFuzzRegressionTests: XCTestCase {
    /// Inputs that once broke an invariant, kept byte for byte (script format: SessionFuzzHarness.swift).
    /// Add every new crash here, minimized (tools/fuzz/README.md, "Crashes become tests").
    static let regressions: [(name: String, why: String, script: [UInt8])] = [
        (
            "relay-consume-before-data",
            "a socket drained before any data came: with a window under 4 bytes, ReceiveWindow granted WINDOW 0 (c3c5dcb)",
            // As the seed of the same name today: windows of 3 and 4 bytes, start, deliver all,
            // consume 5 at server port 3 and 0 at mediator port 1, deliver all.
            [0xda, 0x04, 0x07, 0x0b, 0x04, 0x05, 0x0b, 0x01, 0x00, 0x07]
        )
    ]

    func testEveryKeptCrashInputReplaysClean() throws {
        for input in Self.regressions {
            XCTAssertNoThrow(try SessionFuzzHarness.run(input.script), "\(input.name): \(input.why)")
        }
    }

    /// tools/fuzz/corpus/session, as committed.
    private static func corpus() throws -> [String: [UInt8]] {
        let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("tools/fuzz/corpus/session")
        var scripts: [String: [UInt8]] = [:]
        for name in try FileManager.default.contentsOfDirectory(atPath: directory.path) {
            scripts[name] = Array(try Data(contentsOf: directory.appendingPathComponent(name)))
        }
        return scripts
    }

    func testTheSeedCorpusReplaysClean() throws {
        let scripts = try Self.corpus()
        XCTAssertGreaterThanOrEqual(scripts.count, 25, "seeds missing from tools/fuzz/corpus/session")
        for (name, script) in scripts.sorted(by: { $0.key < $1.key }) {
            XCTAssertNoThrow(try SessionFuzzHarness.run(script), name)
        }
    }

    /// The seeds reach what they are named for, so a replay that passes exercised something.
    func testSeedsReachTheirStates() throws {
        let scripts = try Self.corpus()
        func replay(_ name: String) throws -> SessionFuzzHarness {
            try SessionFuzzHarness.run(try XCTUnwrap(scripts[name], "no seed \(name)"))
        }
        // Seeds about an established session must get there: relay seeds whose settings byte also
        // chose an interceptor's key once never reached the relay at all (tools/fuzz/make-corpus).
        for (name, _) in scripts
        where ["relay-", "keepalive", "dead-peer", "goaway-established", "handshake", "forged-mid"].contains(where: {
            name.hasPrefix($0)
        }) && name != "handshake-timeout" {
            XCTAssertTrue(try replay(name).bothEstablished, "seed \(name) never established a session")
        }
        XCTAssertTrue(try replay("handshake").bothEstablished)
        XCTAssertTrue(try replay("mutual-tls-right-name").bothEstablished)
        XCTAssertTrue(try replay("relay-tiny-windows").windowGrants > 0)
        // Each relay seed reaches the path of StreamPortStateMachine it is named for.
        let early = try replay("relay-early-frames").relayCounts
        XCTAssertGreaterThan(early.replays, 0)
        XCTAssertGreaterThan(early.halfCloses, 0)
        XCTAssertEqual(early.closedBothWays, 2)
        let budget = try replay("relay-buffer-limit")
        XCTAssertGreaterThanOrEqual(budget.relayCounts.bufferRefusals, 2)
        XCTAssertGreaterThan(budget.relayCounts.resetsByPeer, 0)
        XCTAssertEqual(
            Set(budget[.mediator].ports.values.compactMap { $0.ended?.reason }), [.sessionBufferFull, .sessionBufferFullBeforeReady])
        XCTAssertGreaterThan(try replay("relay-tunnel-full").relayCounts.waitsForTunnel, 0)
        XCTAssertEqual(try replay("relay-close-by-request").relayCounts.closedByRequest, 2)
        let draining = try replay("relay-draining").relayCounts
        XCTAssertEqual(draining.drains, 1)
        XCTAssertEqual(draining.closedBothWays, 2)
        let eof = try replay("relay-eof-behind-held")
        XCTAssertEqual(eof[.mediator].ports[1]?.writtenCount, 10)
        XCTAssertEqual(eof[.mediator].ports[1]?.machine.halves.receivedFin, true)
        let late = try replay("relay-owner-reset").relayCounts
        XCTAssertEqual(late.lateJoins, 1)
        XCTAssertEqual(late.resetsByPeer, 1)
        XCTAssertEqual(try replay("relay-consume-before-data").ends.map(\.established?.name), ["acme", "acme"])
        XCTAssertEqual(
            scripts["relay-consume-before-data"], Self.regressions.first { $0.name == "relay-consume-before-data" }?.script,
            "the kept crash input and the seed of the same name differ")
        for refused in ["mutual-tls-wrong-name", "mutual-tls-no-certificate", "interceptor", "server-binding-mismatch"] {
            let h = try replay(refused)
            XCTAssertNil(h[.server].established, refused)
            XCTAssertTrue(h[.server].closed && h[.mediator].closed, refused)
        }
        let failed = try replay("decode-failed-established")
        XCTAssertNotNil(failed[.server].established)
        XCTAssertTrue(failed[.server].closed && failed[.mediator].closed)
    }

    /// The driver reports what it checks: a script whose honest ends are made to disagree is caught.
    func testTheDriverCatchesABrokenInvariant() throws {
        // Established (default settings, start, deliver all); then the mediator's port 1 gets a socket
        // and hears FINISHED twice with no forged frame in play: honest peers never do that.
        var harness = try SessionFuzzHarness.run([0x36, 0x04, 0x07])
        XCTAssertTrue(harness.bothEstablished)
        try harness.socketJoined(PortRef(0x01))
        try harness.relayReceive(.finished(.init(portID: 1)), at: .mediator)
        XCTAssertThrowsError(try harness.relayReceive(.finished(.init(portID: 1)), at: .mediator)) { error in
            XCTAssertTrue("\(error)".contains("FINISHED twice"), "\(error)")
        }
    }

    /// Bytes written to a socket must be the peer's socket's bytes, in order: DATA of other bytes is caught.
    func testTheDriverCatchesWrongBytes() throws {
        var harness = try SessionFuzzHarness.run([0x36, 0x04, 0x07])
        try harness.socketJoined(PortRef(0x01))
        // The server's socket for port 1 reads 8, 9, 10, ... (SessionFuzzHarness.content).
        try harness.relayReceive(.data(.init(portID: 1, bytes: ByteBuffer(bytes: [8, 9]))), at: .mediator)
        XCTAssertThrowsError(
            try harness.relayReceive(.data(.init(portID: 1, bytes: ByteBuffer(bytes: [11]))), at: .mediator)
        ) { error in
            XCTAssertTrue("\(error)".contains("wrote byte 2 of the peer's stream wrong"), "\(error)")
        }
    }

    /// A RESET that one end sent and the other took must end the other's port: the quiet-connection
    /// check sees a port that went on.
    func testTheDriverCatchesAResetThatDidNotArrive() throws {
        // Established; the server's port 1 reads 10 bytes, the mediator joins, everything is delivered.
        var harness = try SessionFuzzHarness.run([0x36, 0x04, 0x07, 0x0a, 0x00, 0x0a, 0x15, 0x01, 0x07])
        XCTAssertEqual(harness[.mediator].ports[1]?.writtenCount, 10)
        // The server resets the port; its RESET is lost on the way (it never reaches the mediator).
        try harness.resetByOwner(PortRef(0x00))
        harness.ends[End.server.rawValue].outbox.removeAll()
        XCTAssertThrowsError(try harness.checkFlowControl()) { error in
            XCTAssertTrue("\(error)".contains("RESET arrived but mediator's port goes on"), "\(error)")
        }
    }
}
