import Foundation
import NIOCore
import NIOEmbedded
import PosternCore
import PosternTunnel
import PosternWire
import XCTest

@testable import PosternServer

/// The server's side of pipelined CONNECT (docs/protocol.md §5.3) on a real `MediatorLink`: a
/// server-chosen id only to a mediator that announced bit 8, counting from 0x80000001, the owner told
/// the id as the CONNECT goes out, and a refusal for limits sent again under a new id.
final class MediatorLinkPipelinedConnectTests: XCTestCase {
    private var harness: EstablishedLinkHarness!
    private var link: MediatorLink { harness.link }
    private let target = Endpoint(IPAddress("192.168.77.10")!, 80)
    /// What the owner was told: "sent N", "requeued".
    private var told: [String] = []

    override func setUpWithError() throws {
        harness = try EstablishedLinkHarness()
    }

    override func tearDown() {
        harness.finish()
        harness = nil
    }

    private func connect() -> EventLoopFuture<Frame.Done> {
        link.connect(
            portID: 0, to: target, owner: "test",
            pipelined: .init(sent: { self.told.append("sent \(String($0, radix: 16))") }, requeued: { self.told.append("requeued") }))
    }

    private func connects() throws -> [Frame.Connect] {
        try harness.framesOut().compactMap { if case .connect(let c) = $0 { return c } else { return nil } }
    }

    func testWithoutTheCapabilityOrBeforeTheEnvironmentItIsTheOldConnect() throws {
        _ = connect()
        XCTAssertEqual(try connects().map(\.portID), [0], "no ENVIRONMENT yet: port id 0")
        try harness.environment([.echoOffered])
        XCTAssertFalse(link.pipelinesConnects)
        _ = connect()
        XCTAssertEqual(try connects().map(\.portID), [0], "an older mediator: port id 0")
        XCTAssertEqual(told, [], "the owner's relay waits for DONE, as before")
    }

    func testAServerChosenIDCountingFrom0x80000001AndTheOwnerToldAsItGoesOut() throws {
        try harness.environment([.pipelinedConnect])
        XCTAssertTrue(link.pipelinesConnects)
        let first = connect()
        let second = connect()
        let sent = try connects()
        XCTAssertEqual(sent.map(\.portID), [0x8000_0001, 0x8000_0002])
        XCTAssertEqual(told, ["sent 80000001", "sent 80000002"])
        try harness.channel.writeInbound(
            Frame.done(.init(requestID: sent[0].requestID, portID: 0x8000_0001, local: Endpoint(.anyV4, 40000))))
        XCTAssertEqual(try first.wait().portID, 0x8000_0001)
        try harness.channel.writeInbound(
            Frame.failed(.init(requestID: sent[1].requestID, code: .refused, errno: 111, message: "Connection refused")))
        XCTAssertThrowsError(try second.wait())
        // A CONNECT without a pipelining owner (SOCKS5, ctl connect) still names port 0.
        _ = link.connect(portID: 0, to: target, owner: "socks")
        XCTAssertEqual(try connects().map(\.portID), [0])
    }

    func testARefusalForLimitsGoesAgainUnderANewID() throws {
        try harness.environment([.pipelinedConnect])
        let answer = connect()
        let first = try connects()
        XCTAssertEqual(first.map(\.portID), [0x8000_0001])
        try harness.channel.writeInbound(
            Frame.failed(
                .init(requestID: first[0].requestID, code: .limitExceeded, errno: 11, message: "more than 5000 requests a second")))
        harness.channel.embeddedEventLoop.advanceTime(by: .seconds(1))
        let again = try connects()
        XCTAssertEqual(again.map(\.portID), [0x8000_0002], "a new id: the old one is never reused")
        XCTAssertEqual(told, ["sent 80000001", "requeued", "sent 80000002"])
        try harness.channel.writeInbound(
            Frame.done(.init(requestID: again[0].requestID, portID: 0x8000_0002, local: Endpoint(.anyV4, 40000))))
        XCTAssertEqual(try answer.wait().portID, 0x8000_0002)
    }

    func testADoneNamingAnotherPortEndsTheSession() throws {
        try harness.environment([.pipelinedConnect])
        _ = connect()
        let c = try connects()
        try harness.channel.writeInbound(Frame.done(.init(requestID: c[0].requestID, portID: 7, local: Endpoint(.anyV4, 1))))
        let out = try harness.framesOut()
        XCTAssertTrue(
            out.contains { if case .goAway(let g) = $0 { return g.code == .protocolError } else { return false } }, "GOAWAY: \(out)")
    }
}
