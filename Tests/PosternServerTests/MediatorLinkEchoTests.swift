import Foundation
import Logging
import NIOCore
import NIOEmbedded
import PosternCore
import PosternTunnel
import PosternWire
import XCTest

@testable import PosternServer

/// The server's side of ECHO (docs/protocol.md §11): a real `MediatorLink` behind a real server
/// `TunnelSession` on an `EmbeddedChannel`, brought to established by a real mediator state machine.
/// ECHO goes only to a mediator that offered it, the waiting requests are bounded, answers are
/// matched by request id, and forged answers change nothing.
final class MediatorLinkEchoTests: XCTestCase {
    private var harness: EstablishedLinkHarness!
    private var channel: EmbeddedChannel { harness.channel }
    private var link: MediatorLink { harness.link }
    private let lanhost = IPAddress("192.168.77.10")!

    override func setUpWithError() throws {
        harness = try EstablishedLinkHarness()
    }

    override func tearDown() {
        harness.finish()
        harness = nil
    }

    private func framesOut() throws -> [Frame] { try harness.framesOut() }

    private func environment(_ capabilities: MediatorEnvironment.Capabilities) throws {
        try harness.environment(capabilities)
    }

    private func echo() -> EventLoopFuture<Frame.EchoReply> {
        link.echo(to: lanhost, ttl: 64, sequence: 1, size: 56, timeoutMillis: 2000)
    }

    private func failure(_ future: EventLoopFuture<Frame.EchoReply>) throws -> OperationError? {
        channel.embeddedEventLoop.run()
        let error = Box<OperationError>()
        future.whenFailure { error.value = $0 as? OperationError }
        channel.embeddedEventLoop.run()
        return error.value
    }

    func testNothingIsSentToAMediatorThatDidNotOfferEcho() throws {
        // Before any ENVIRONMENT, and after one without bit 0x20 (an older mediator).
        XCTAssertEqual(try failure(echo())?.code, .notSupported)
        try environment([.tun, .rawSockets])
        let error = try failure(echo())
        XCTAssertEqual(error?.code, .notSupported)
        XCTAssertEqual(error?.message.contains("does not offer ICMP echo"), true)
        XCTAssertEqual(try framesOut().filter { $0.type == Frame.Echo.type }, [], "no ECHO went out")
    }

    func testANameGoesOnlyToAMediatorThatResolvesNames() throws {
        // Bit 0x20 without 0x80: a mediator that knows ECHO but would refuse the name form.
        try environment([.echoOffered, .rawSockets])
        let name = link.echo(to: .name("lanhost"), family: .ipv6, ttl: 64, sequence: 1, size: 56, timeoutMillis: 2000)
        let error = try failure(name)
        XCTAssertEqual(error?.code, .notSupported)
        XCTAssertEqual(error?.message.contains("cannot resolve names"), true)
        XCTAssertEqual(try framesOut().filter { $0.type == Frame.Echo.type }, [], "no ECHO went out")
        // An address still goes to it, with no family byte.
        _ = link.echo(to: .ip(lanhost), family: .ipv6, ttl: 64, sequence: 1, size: 56, timeoutMillis: 2000)
        guard case .echo(let literal)? = try framesOut().last else { return XCTFail("no ECHO sent") }
        XCTAssertEqual(literal.host, .ip(lanhost))
        XCTAssertEqual(literal.family, .any)
        // A mediator with bit 0x80 gets the name and the family.
        try environment([.echoOffered, .rawSockets, .echoNames])
        _ = link.echo(to: .name("lanhost"), family: .ipv6, ttl: 64, sequence: 1, size: 56, timeoutMillis: 2000)
        guard case .echo(let sent)? = try framesOut().last else { return XCTFail("no ECHO sent") }
        XCTAssertEqual(sent.host, .name("lanhost"))
        XCTAssertEqual(sent.family, .ipv6)
        XCTAssertNil(sent.destination)
    }

    func testAnswersAreMatchedByRequestIDAndForgedOnesChangeNothing() throws {
        try environment([.echoOffered, .rawSockets])
        let answer = Box<Frame.EchoReply>()
        echo().whenSuccess { answer.value = $0 }
        guard case .echo(let sent)? = try framesOut().last else { return XCTFail("no ECHO sent") }
        XCTAssertEqual(sent.destination, lanhost)
        XCTAssertEqual(sent.ttl, 64)
        // A reply to a request never made, then a second reply to the same request: ignored.
        let reply = Frame.EchoReply(
            requestID: sent.requestID, outcome: .reply, icmpType: 0, icmpCode: 0, from: lanhost, ttl: 64, size: 56, rttMicros: 520)
        var forged = reply
        forged.requestID &+= 1000
        try channel.writeInbound(Frame.echoReply(forged))
        channel.embeddedEventLoop.run()
        XCTAssertNil(answer.value)
        try channel.writeInbound(Frame.echoReply(reply))
        try channel.writeInbound(Frame.echoReply(reply))
        channel.embeddedEventLoop.run()
        XCTAssertEqual(answer.value, reply)
        XCTAssertTrue(link.isOpen)
        // FAILED answers a request too.
        let denied = echo()
        guard case .echo(let second)? = try framesOut().last else { return XCTFail("no ECHO sent") }
        try channel.writeInbound(
            Frame.failed(
                .init(requestID: second.requestID, code: .deniedByPolicy, errno: 13, message: "ICMP echo to x is denied by policy")))
        XCTAssertEqual(try failure(denied)?.code, .deniedByPolicy)
    }

    func testWaitingRequestsAreBoundedAndFailWhenTheSessionEnds() throws {
        try environment([.echoOffered])
        let waiting = (0..<MediatorLink.maxPendingEchoes).map { _ in echo() }
        XCTAssertEqual(try framesOut().filter { $0.type == Frame.Echo.type }.count, MediatorLink.maxPendingEchoes)
        XCTAssertEqual(try failure(echo())?.code, .limitExceeded)
        XCTAssertEqual(try framesOut().filter { $0.type == Frame.Echo.type }.count, 0, "the one over the bound was not sent")
        try channel.writeInbound(Frame.goAway(.init(code: .shuttingDown, message: "bye")))
        channel.embeddedEventLoop.run()
        for future in waiting { XCTAssertEqual(try failure(future)?.code, .shuttingDown) }
    }
}

/// What a future's callback leaves for the test; touched on the embedded loop's (the test's) thread only.
private final class Box<T>: @unchecked Sendable {
    var value: T?
}
