import NIOCore
import PosternCore
import PosternWire
import XCTest

@testable import PosternMediator

/// ECHO on the mediator (docs/protocol.md §11) through a real tunnel: the policy, the bound on
/// requests in flight, a host without ICMP sockets, and real echo replies over loopback (which the
/// harness's policy opens) where this host gives the test an ICMP socket.
final class EchoRequestTests: XCTestCase {
    private var harness: MediatorHarness!

    override func tearDown() {
        harness?.shutdown()
        harness = nil
    }

    private func echo(_ id: UInt32, to address: String = "127.0.0.1", size: UInt16 = 56, timeout: UInt32 = 2000) -> Frame {
        .echo(.init(requestID: id, destination: IPAddress(address)!, ttl: 64, sequence: UInt16(id), size: size, timeoutMillis: timeout))
    }

    /// The ICMP socket this host gives the test process, or a skip.
    private func realEcho() throws -> ICMPEcho {
        let echo = ICMPEcho()
        if case .unavailable(let why) = echo.mode { throw XCTSkip(why) }
        return echo
    }

    func testADestinationOutsideThePolicyIsDenied() throws {
        harness = try MediatorHarness()
        try harness.setEcho(ICMPEcho(mode: .unavailable("not reached")))
        let f = try harness.failed(echo(1, to: "192.0.2.1"))
        XCTAssertEqual(f.code, .deniedByPolicy)
        XCTAssertEqual(f.errno, 13)
        XCTAssertEqual(f.message, "ICMP echo to 192.0.2.1 is denied by policy")
        // The mediator's own host needs a rule naming it, even with no rule at all.
        harness.shutdown()
        harness = try MediatorHarness { $0.policy = Policy() }
        try harness.setEcho(ICMPEcho(mode: .unavailable("not reached")))
        XCTAssertEqual(try harness.failed(echo(2, to: "127.0.0.1")).code, .deniedByPolicy)
    }

    func testAHostWithoutICMPSocketsSaysWhatIsMissing() throws {
        harness = try MediatorHarness()
        let why = ProcessCapabilities.icmpRefusal(group: 1000, pingGroupRange: "1\t0\n")
        try harness.setEcho(ICMPEcho(mode: .unavailable(why)))
        let f = try harness.failed(echo(1))
        XCTAssertEqual(f.code, .notSupported)
        XCTAssertEqual(f.message, "ICMP echo needs CAP_NET_RAW (missing) or net.ipv4.ping_group_range to include group 1000 (now 1 0)")
        try harness.setEcho(nil)
        XCTAssertEqual(try harness.failed(echo(2)).message, "ICMP echo is off on this mediator")
    }

    func testEchoRepliesOverLoopback() throws {
        let icmp = try realEcho()
        harness = try MediatorHarness()
        try harness.setEcho(icmp)
        let answers = try harness.send([echo(1), echo(2, size: 0), echo(3, size: 1472)])
        for (answer, size) in zip(answers, [56, 0, 1472]) {
            guard case .echoReply(let r) = answer else { return XCTFail("answered \(answer)") }
            XCTAssertEqual(r.outcome, .reply)
            XCTAssertEqual(r.from, IPAddress("127.0.0.1"))
            XCTAssertEqual(Int(r.size), size)
            XCTAssertEqual(r.ttl, 64)
            XCTAssertLessThan(r.rttMicros, 2_000_000)
        }
    }

    /// ICMPv6: echo replies from ::1 through the same kind of socket, the hop limit as TTL; a name
    /// resolved on the mediator, to the family asked for; one that does not resolve; and the policy
    /// applied to the address a name resolved to.
    func testIPv6AndNamesOverLoopback() throws {
        let icmp = try realEcho()
        harness = try MediatorHarness { $0.policy = Policy(allow: [try AllowRule(parsing: "[::1]")]) }
        try harness.setEcho(icmp)
        let answers = try harness.send([echo(1, to: "::1"), echo(2, to: "::1", size: 0), echo(3, to: "::1", size: 1472)])
        for (answer, size) in zip(answers, [56, 0, 1472]) {
            guard case .echoReply(let r) = answer else { return XCTFail("answered \(answer)") }
            XCTAssertEqual(r.outcome, .reply)
            XCTAssertEqual(r.from, IPAddress("::1"))
            XCTAssertEqual(Int(r.size), size)
            XCTAssertEqual(r.ttl, 64, "the hop limit the reply arrived with")
        }
        // "localhost" is 127.0.0.1 here, which this policy does not allow: the address is checked.
        let named = Frame.echo(
            .init(requestID: 4, host: .name("localhost"), family: .ipv4, ttl: 64, sequence: 4, size: 8, timeoutMillis: 2000))
        let denied = try harness.failed(named)
        XCTAssertEqual(denied.code, .deniedByPolicy)
        XCTAssertEqual(denied.message, "ICMP echo to 127.0.0.1 is denied by policy")
        // RFC 6761: .invalid never resolves.
        let nowhere = Frame.echo(
            .init(requestID: 5, host: .name("nowhere.invalid"), ttl: 64, sequence: 5, size: 8, timeoutMillis: 2000))
        let failed = try harness.failed(nowhere)
        XCTAssertEqual(failed.code, .resolveFailed)
        XCTAssertTrue(failed.message.hasPrefix("cannot resolve nowhere.invalid"), failed.message)

        // A forged name with a NUL (getaddrinfo would read "localhost") or a space is refused whole.
        for forged in ["localhost\u{0}.evil", "local host"] {
            let f = try harness.failed(
                .echo(.init(requestID: 6, host: .name(forged), ttl: 64, sequence: 6, size: 8, timeoutMillis: 2000)))
            XCTAssertEqual(f.code, .resolveFailed)
            XCTAssertTrue(f.message.hasSuffix("is not a host name"), f.message)
        }

        harness.shutdown()
        harness = try MediatorHarness()
        try harness.setEcho(icmp)
        guard case .echoReply(let r) = try harness.send([named])[0] else { return XCTFail("no reply from localhost") }
        XCTAssertEqual(r.outcome, .reply)
        XCTAssertEqual(r.from, IPAddress("127.0.0.1"))
    }

    /// A flood: 40 ECHOs in one read. At most 16 are in flight; the rest are refused at once, and
    /// every one is answered.
    func testAFloodIsBoundedAndAnswered() throws {
        let icmp = try realEcho()
        harness = try MediatorHarness()
        try harness.setEcho(icmp)
        let answers = try harness.send((1...40).map { echo(UInt32($0)) })
        var replies = 0
        var refused = 0
        for answer in answers {
            switch answer {
            case .echoReply(let r) where r.outcome == .reply: replies += 1
            case .failed(let f) where f.code == .limitExceeded: refused += 1
            default: XCTFail("answered \(answer)")
            }
        }
        XCTAssertEqual(replies, ICMPEcho.maxInFlight)
        XCTAssertEqual(refused, 40 - ICMPEcho.maxInFlight)
        // Once answered, the slots are free again.
        guard case .echoReply = try harness.send([echo(41)])[0] else { return XCTFail("no reply after the flood") }
    }
}
