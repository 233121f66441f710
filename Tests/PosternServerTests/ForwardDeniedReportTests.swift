import Foundation
import Logging
import NIOCore
import NIOEmbedded
import PosternCore
import PosternTunnel
import PosternWire
import XCTest

@testable import PosternServer

/// A `udp:` forward's datagrams the mediator's policy drops reach the forward's DENIED counter through
/// DENIED (docs/protocol.md §5.1, §6.5), on a real `MediatorLink` and a real forward socket: OPEN asks
/// for the reports only of a mediator that announced bit 9, the count is bounded by what the flow
/// sent, and a DENIED for a port the server does not have changes nothing.
final class ForwardDeniedReportTests: XCTestCase {
    private var harness: EstablishedLinkHarness!
    private var link: MediatorLink { harness.link }
    private var counters: ForwardCounters!
    private var users: EmbeddedChannel!
    private let user = try! SocketAddress(ipAddress: "203.0.113.5", port: 1000)

    override func setUpWithError() throws {
        harness = try EstablishedLinkHarness()
        counters = ForwardCounters()
        let loop = harness.channel.embeddedEventLoop
        let spec = try ForwardSpec(parsing: "udp:127.0.0.1:5353=acme/192.168.77.10:53")
        let link = self.link
        let socket = UDPForwardToMediatorSocket(
            spec: spec, eventLoop: loop, counters: counters, limits: DatagramFlowLimits(),
            now: { NIODeadline.uptimeNanoseconds(1_000_000_000) }, logger: Logger(label: "test"),
            openPort: { owner in link.openUDPPort(v6: false, owner: owner, reportDenied: true) })
        users = EmbeddedChannel(handler: socket, loop: loop)
    }

    override func tearDown() {
        _ = try? users.finish()
        harness.finish()
        harness = nil
    }

    private func fromUser(_ n: Int) throws {
        for i in 0..<n { try users.writeInbound(AddressedEnvelope(remoteAddress: user, data: ByteBuffer(string: "q\(i)"))) }
    }

    /// The user's first datagrams open a flow: the OPEN that goes out, answered with DONE for port 7.
    private func openFlow(_ datagrams: Int) throws -> Frame.Open? {
        try fromUser(datagrams)
        guard case .open(let open) = try harness.framesOut().first else {
            XCTFail("no OPEN")
            return nil
        }
        try harness.channel.writeInbound(Frame.done(.init(requestID: open.requestID, portID: 7, local: Endpoint(.anyV4, 40000))))
        let sent = try harness.framesOut().filter { if case .datagram = $0 { return true } else { return false } }
        XCTAssertEqual(sent.count, datagrams, "the backlog went to the mediator")
        return open
    }

    func testAnOlderMediatorGetsTheOriginalOpen() throws {
        try harness.environment([.pipelinedConnect])
        XCTAssertNil(try openFlow(1)?.flags)
    }

    func testDeniedCountsAreAddedAndBoundedByWhatTheFlowSent() throws {
        try harness.environment([.deniedReports])
        XCTAssertEqual(try openFlow(3)?.flags, .reportDenied)
        try harness.channel.writeInbound(Frame.denied(.init(portID: 7, count: 2)))
        XCTAssertEqual(counters.policyDenials, 2)
        // Forged: more than the flow sent, then a port the server does not have.
        try harness.channel.writeInbound(Frame.denied(.init(portID: 7, count: .max)))
        XCTAssertEqual(counters.policyDenials, 3, "cut to the one datagram not yet reported")
        try harness.channel.writeInbound(Frame.denied(.init(portID: 7, count: 5)))
        try harness.channel.writeInbound(Frame.denied(.init(portID: 999, count: 5)))
        XCTAssertEqual(counters.policyDenials, 3, "nothing left to deny, and port 999 is nobody's")
        try fromUser(4)
        try harness.channel.writeInbound(Frame.denied(.init(portID: 7, count: 4)))
        XCTAssertEqual(counters.policyDenials, 7)
        XCTAssertTrue(link.isOpen, "DENIED, forged or not, never ends the session")
    }

    /// A flood of DENIED holds nothing and ends nothing.
    func testAFloodOfDeniedIsBounded() throws {
        try harness.environment([.deniedReports])
        _ = try openFlow(10)
        for i in 0..<10_000 { try harness.channel.writeInbound(Frame.denied(.init(portID: UInt32(i % 20), count: 1_000))) }
        XCTAssertEqual(counters.policyDenials, 10)
        XCTAssertTrue(link.isOpen)
    }
}
