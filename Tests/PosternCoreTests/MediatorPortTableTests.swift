import NIOCore
import PosternWire
import XCTest

@testable import PosternCore

/// The mediator's port rules (docs/protocol.md §5), with plain strings standing in for sockets.
final class MediatorPortTableTests: XCTestCase {
    enum Names: MediatorPortHandles {
        typealias Reserved = String
        typealias Stream = String
        typealias Listener = String
        typealias Datagram = String
    }
    typealias Table = MediatorPortTable<Names>

    private let t0 = NIODeadline.uptimeNanoseconds(1_000_000_000)
    private let lan = Endpoint(IPAddress("192.168.77.10")!, 80)

    private func table(
        maxPorts: Int = 100, maxPendingConnects: Int = 100, maxRequestRate: Int = 1000,
        policy: Policy = Policy(listenEnabled: true), pipelined: Bool = false
    ) -> Table {
        Table(
            limits: MediatorPortLimits(maxPorts: maxPorts, maxPendingConnects: maxPendingConnects, maxRequestRate: maxRequestRate),
            policy: policy, now: t0, takesServerPortIDs: pipelined)
    }

    private func success<T>(
        _ result: Result<T, MediatorPortRefusal>, file: StaticString = #filePath, line: UInt = #line
    ) throws -> T {
        switch result {
        case .success(let value): return value
        case .failure(let refusal):
            XCTFail("refused: \(refusal)", file: file, line: line)
            throw refusal
        }
    }

    private func refusal<T>(_ result: Result<T, MediatorPortRefusal>) -> MediatorPortRefusal? {
        if case .failure(let refusal) = result { return refusal }
        return nil
    }

    /// OPEN of a TCP port, bound as `name`.
    private func openReserved(_ t: inout Table, _ name: String) throws -> UInt32 {
        let id = try success(t.open(at: .anyV4, now: t0))
        XCTAssertTrue(t.opened(id, reserved: name))
        return id
    }

    private func openListener(_ t: inout Table, _ name: String) throws -> UInt32 {
        let id = try openReserved(&t, name)
        XCTAssertEqual(try success(t.listen(portID: id, now: t0)), name)
        XCTAssertNil(t.listening(id, listener: name))
        return id
    }

    private func openStream(_ t: inout Table, _ name: String) throws -> UInt32 {
        let id = try success(t.connect(portID: 0, now: t0)).portID
        XCTAssertNil(t.resolved(id, destination: lan, address: IPAddress("192.168.77.10")))
        XCTAssertNil(t.connected(id, stream: name))
        return id
    }

    // MARK: - Port ids

    func testIDsCountFromOneAndAreNeverReused() throws {
        var t = table()
        let a = try openReserved(&t, "a")
        XCTAssertEqual(a, 1)
        let failed = try success(t.open(at: .anyV4, now: t0))
        t.openFailed(failed)
        XCTAssertNil(t[failed], "a failed open leaves nothing behind")
        _ = try success(t.close(portID: a))
        let b = try openReserved(&t, "b")
        XCTAssertEqual(b, 3, "neither the failed open's id nor the closed port's id comes back")
        let c = try openStream(&t, "c")
        let listener = try openListener(&t, "l")
        let child = try success(t.accept(on: listener))
        XCTAssertTrue(t.accepted(child, stream: "child"))
        XCTAssertEqual([b, c, listener, child], [3, 4, 5, 6], "OPEN, CONNECT with port id 0 and accepted connections share one counter")
        XCTAssertEqual(t.portIDs, [3, 4, 5, 6])
    }

    func testAfterTheLastIDNoPortIsCreated() throws {
        var t = table()
        t.nextPortID = PortIDRange.lastMediatorID
        let last = try openReserved(&t, "last")
        XCTAssertEqual(last, 0x7FFF_FFFF, "the mediator's range ends below the server's (§5): a limit, not a wrap")
        XCTAssertEqual(refusal(t.open(at: .anyV4, now: t0)), .portIDsExhausted)
        XCTAssertEqual(refusal(t.connect(portID: 0, now: t0)), .portIDsExhausted)
        XCTAssertEqual(t.portIDs, [0x7FFF_FFFF], "0 (\"no port\" in CONNECT), 1 and the server's 0x8000_0000 are never handed out")
        XCTAssertEqual(MediatorPortRefusal.portIDsExhausted.code, .limitExceeded)
        // The existing ports still work.
        XCTAssertNotNil(try success(t.connect(portID: last, now: t0)))
    }

    // MARK: - Limits

    func testPortLimitExactlyAtTheBoundary() throws {
        var t = table(maxPorts: 3)
        let first = try openReserved(&t, "a")
        let opening = try success(t.open(at: .anyV4, now: t0))  // still binding: it counts
        _ = try openStream(&t, "b")
        XCTAssertEqual(t.count, 3)
        XCTAssertEqual(refusal(t.open(at: .anyV4, now: t0)), .portLimit(3))
        XCTAssertEqual(refusal(t.connect(portID: 0, now: t0)), .portLimit(3))
        XCTAssertEqual(MediatorPortRefusal.portLimit(3).message, "the mediator holds its limit of 3 ports")
        XCTAssertEqual(MediatorPortRefusal.portLimit(3).code, .limitExceeded)
        XCTAssertEqual(MediatorPortRefusal.portLimit(3).errno, 0)
        // CONNECT on an opened port creates nothing: allowed at the limit.
        XCTAssertEqual(try success(t.connect(portID: first, now: t0)).from, "a")
        t.openFailed(opening)
        XCTAssertEqual(t.count, 2)
        XCTAssertNotNil(try success(t.open(at: .anyV4, now: t0)), "one below the limit again")
        XCTAssertEqual(refusal(t.open(at: .anyV4, now: t0)), .portLimit(3))
    }

    func testAcceptedConnectionsCountAndAreRefusedAtTheLimit() throws {
        var t = table(maxPorts: 2)
        let listener = try openListener(&t, "l")
        let child = try success(t.accept(on: listener))
        XCTAssertEqual(refusal(t.accept(on: listener)), .portLimit(2), "the child being attached counts")
        XCTAssertTrue(t.accepted(child, stream: "c"))
        XCTAssertEqual(refusal(t.accept(on: listener)), .portLimit(2))
        t.released(child)
        XCTAssertNotNil(try success(t.accept(on: listener)))
    }

    func testPendingConnectLimitExactlyAtTheBoundary() throws {
        var t = table(maxPendingConnects: 2)
        let a = try success(t.connect(portID: 0, now: t0)).portID
        let b = try success(t.connect(portID: 0, now: t0)).portID
        XCTAssertEqual(t.pendingConnects, 2)
        let third = refusal(t.connect(portID: 0, now: t0))
        XCTAssertEqual(third, .pendingConnectLimit(inProgress: 2, limit: 2))
        XCTAssertEqual(third?.message, "2 connects already in progress (limit 2)")
        XCTAssertEqual(third?.code, .limitExceeded)
        XCTAssertEqual(third?.errno, 0)
        XCTAssertEqual(t.count, 2, "a refused connect takes no port id")
        // A connect whose port was closed still holds its socket until it ends.
        _ = try success(t.close(portID: a))
        XCTAssertEqual(refusal(t.connect(portID: 0, now: t0)), .pendingConnectLimit(inProgress: 2, limit: 2))
        XCTAssertEqual(t.connected(a, stream: "late"), .closedWhileConnecting(a))
        XCTAssertEqual(t.pendingConnects, 1)
        let c = try success(t.connect(portID: 0, now: t0)).portID
        t.connectFailed(b)
        XCTAssertEqual(t.resolved(c, destination: lan, address: IPAddress("192.168.77.10")), nil)
        XCTAssertNil(t.connected(c, stream: "c"))
        XCTAssertEqual(t.pendingConnects, 0)
    }

    func testRequestRateRefillsWithTheInjectedClock() throws {
        var t = table(maxRequestRate: 4)
        // A fresh session may send the whole burst at once; every limited kind of request takes a token.
        XCTAssertNotNil(try? t.open(at: .anyV4, now: t0).get())
        XCTAssertNotNil(try? t.connect(portID: 0, now: t0).get())
        XCTAssertEqual(refusal(t.redirect(at: .anyV4, now: t0)), .redirectDenied)
        XCTAssertEqual(refusal(t.listen(portID: 99, now: t0)), .noSuchPort(99), "a request refused later still took its token")
        XCTAssertEqual(refusal(t.open(at: .anyV4, now: t0)), .requestRate(limit: 4))
        XCTAssertEqual(refusal(t.connect(portID: 0, now: t0)), .requestRate(limit: 4))
        XCTAssertEqual(refusal(t.listen(portID: 99, now: t0)), .requestRate(limit: 4))
        XCTAssertEqual(refusal(t.redirect(at: .anyV4, now: t0)), .requestRate(limit: 4))
        XCTAssertEqual(t.refusedForRate, 4)
        let rate = MediatorPortRefusal.requestRate(limit: 4)
        XCTAssertEqual(rate.message, "more than 4 requests a second (the mediator's --max-request-rate)")
        XCTAssertEqual(rate.code, .limitExceeded)
        XCTAssertEqual(rate.errno, 11, "EAGAIN")
        // CLOSE only frees: never limited.
        XCTAssertEqual(refusal(t.close(portID: 99)), .noSuchPort(99))
        // 4 a second: one token after 250 ms, not before.
        XCTAssertEqual(refusal(t.open(at: .anyV4, now: t0 + .milliseconds(200))), .requestRate(limit: 4))
        XCTAssertNotNil(try? t.open(at: .anyV4, now: t0 + .milliseconds(250)).get())
        XCTAssertEqual(refusal(t.open(at: .anyV4, now: t0 + .milliseconds(250))), .requestRate(limit: 4))
        // Savings are capped at one second's worth.
        let later = t0 + .seconds(60)
        XCTAssertEqual((0..<10).filter { _ in (try? t.open(at: .anyV4, now: later).get()) != nil }.count, 4)
        XCTAssertEqual(t.refusedForRate, 12)
    }

    // MARK: - Invalid requests

    func testRequestsNamingNoPort() throws {
        var t = table()
        let opening = try success(t.open(at: .anyV4, now: t0))
        for id: UInt32 in [7, opening] {
            XCTAssertEqual(refusal(t.connect(portID: id, now: t0)), .noSuchPort(id))
            XCTAssertEqual(refusal(t.listen(portID: id, now: t0)), .noSuchPort(id))
            XCTAssertEqual(refusal(t.close(portID: id)), .noSuchPort(id), "the server was never told a port being opened")
        }
        XCTAssertEqual(t[opening]?.kind, .opening, "refusals leave it alone")
        let noPort = MediatorPortRefusal.noSuchPort(7)
        XCTAssertEqual([noPort.message, "\(noPort.code)"], ["no port 7", "no such port"])
        XCTAssertEqual(noPort.errno, 0)
        XCTAssertEqual(t.pendingConnects, 0)
    }

    func testConnectAndListenOnlyOnAnUnconnectedTCPPort() throws {
        var t = table()
        let reserved = try openReserved(&t, "r")
        let connecting = try success(t.connect(portID: 0, now: t0)).portID
        let starting = try openReserved(&t, "s")
        _ = try success(t.listen(portID: starting, now: t0))
        let stream = try openStream(&t, "st")
        let listener = try openListener(&t, "l")
        let datagram = try success(t.open(at: .anyV4, now: t0))
        XCTAssertTrue(t.opened(datagram, datagram: "d"))
        let kinds: [UInt32: MediatorPortKind] = [
            connecting: .connecting, starting: .startingToListen, stream: .stream, listener: .listener, datagram: .datagram,
        ]
        let pending = t.pendingConnects
        for (id, kind) in kinds {
            XCTAssertEqual(refusal(t.connect(portID: id, now: t0)), .notUnconnectedTCP(id), "connect on \(kind)")
            XCTAssertEqual(refusal(t.listen(portID: id, now: t0)), .notUnconnectedTCP(id), "listen on \(kind)")
            XCTAssertEqual(t[id]?.kind, kind, "a refused request leaves the port unchanged")
        }
        XCTAssertEqual(t.pendingConnects, pending)
        XCTAssertEqual(t[reserved]?.kind, .reserved)
        let invalid = MediatorPortRefusal.notUnconnectedTCP(5)
        XCTAssertEqual(invalid.message, "port 5 is not an unconnected TCP port")
        XCTAssertEqual(invalid.code, .invalidState)
        XCTAssertEqual(invalid.errno, 0)
    }

    func testListenNeedsAllowListenBeforeAnythingElse() throws {
        var t = table(policy: Policy(listenEnabled: false))
        let reserved = try openReserved(&t, "r")
        XCTAssertEqual(refusal(t.listen(portID: reserved, now: t0)), .listenDenied)
        XCTAssertEqual(refusal(t.listen(portID: 42, now: t0)), .listenDenied, "denied before the port is looked up")
        XCTAssertEqual(t[reserved]?.kind, .reserved)
        let denied = MediatorPortRefusal.listenDenied
        XCTAssertEqual(denied.message, "this mediator does not allow listening (--allow-listen)")
        XCTAssertEqual(denied.code, .deniedByPolicy)
        XCTAssertEqual(denied.errno, 13, "EACCES")
    }

    func testRedirectIsDeniedWithoutAllowRedirect() {
        var off = table(policy: Policy(listenEnabled: true, redirectEnabled: false))
        XCTAssertEqual(refusal(off.redirect(at: .anyV4, now: t0)), .redirectDenied, "--allow-listen does not imply redirect")
        XCTAssertEqual(MediatorPortRefusal.redirectDenied.message, "this mediator does not allow redirect (--allow-redirect)")
        XCTAssertEqual(MediatorPortRefusal.redirectDenied.code, .deniedByPolicy)
        XCTAssertEqual(MediatorPortRefusal.redirectDenied.errno, 13)
        XCTAssertEqual(off.count, 0, "nothing was taken")
    }

    func testRedirectTakesADatagramPortLikeOpen() throws {
        var t = table(policy: Policy(redirectEnabled: true))
        let id = try success(t.redirect(at: .anyV4, now: t0))
        XCTAssertEqual(t[id]?.kind, .opening, "not known to the server until DONE")
        XCTAssertEqual(refusal(t.close(portID: id)), .noSuchPort(id))
        XCTAssertTrue(t.opened(id, datagram: "redirected"))
        XCTAssertEqual(t[id]?.kind, .datagram)
        // A datagram port is no TCP port: CONNECT and LISTEN refuse it and leave it alone.
        XCTAssertEqual(refusal(t.connect(portID: id, now: t0)), .notUnconnectedTCP(id))
        XCTAssertEqual(t[id]?.kind, .datagram)
        // A failed bind (port in use) skips its id for good.
        let failed = try success(t.redirect(at: .anyV4, now: t0))
        t.openFailed(failed)
        XCTAssertNil(t[failed])
        XCTAssertEqual(try success(t.redirect(at: .anyV6, now: t0)), failed + 1, "ids are never reused")
        guard case .datagram(let socket) = try success(t.close(portID: id)) else { return XCTFail("close returned another kind") }
        XCTAssertEqual(socket, "redirected")
        XCTAssertNil(t[id])
    }

    func testRedirectMeetsThePortLimitAndTheEndOfTheSession() throws {
        var t = table(maxPorts: 2, policy: Policy(redirectEnabled: true))
        let a = try success(t.redirect(at: .anyV4, now: t0))
        XCTAssertTrue(t.opened(a, datagram: "a"))
        let b = try success(t.redirect(at: .anyV4, now: t0))
        XCTAssertEqual(refusal(t.redirect(at: .anyV4, now: t0)), .portLimit(2), "every port counts, however it was made")
        XCTAssertEqual(refusal(t.open(at: .anyV4, now: t0)), .portLimit(2))
        XCTAssertEqual(t.sessionClosed().count, 2)
        XCTAssertFalse(t.opened(b, datagram: "late"), "a socket bound after the session ended is not kept: close it")
        XCTAssertEqual(t.count, 0)
    }

    func testRedirectIDsRunOut() throws {
        var t = table(policy: Policy(redirectEnabled: true))
        t.nextPortID = PortIDRange.lastMediatorID
        let last = try success(t.redirect(at: .anyV4, now: t0))
        XCTAssertEqual(last, PortIDRange.lastMediatorID)
        XCTAssertEqual(refusal(t.redirect(at: .anyV4, now: t0)), .portIDsExhausted)
    }

    // MARK: - CONNECT

    func testConnectFromAnOpenedPort() throws {
        var t = table()
        let id = try openReserved(&t, "bound")
        let connect = try success(t.connect(portID: id, now: t0))
        XCTAssertEqual(connect.portID, id)
        XCTAssertEqual(connect.from, "bound", "the opened socket, to close and leave from")
        XCTAssertEqual(t[id]?.kind, .connecting)
        XCTAssertEqual(t.pendingConnects, 1)
        XCTAssertNil(t.resolved(id, destination: lan, address: IPAddress("192.168.77.10")))
        XCTAssertNil(t.connected(id, stream: "conn"))
        XCTAssertEqual(t[id]?.kind, .stream)
        XCTAssertEqual(t.pendingConnects, 0)
    }

    func testConnectWithPortZeroTakesANewPort() throws {
        var t = table()
        let connect = try success(t.connect(portID: 0, now: t0))
        XCTAssertEqual(connect.portID, 1)
        XCTAssertNil(connect.from)
        XCTAssertEqual(t[1]?.kind, .connecting)
    }

    func testAFailedConnectRemovesThePort() throws {
        var t = table()
        let opened = try openReserved(&t, "r")
        _ = try success(t.connect(portID: opened, now: t0))
        t.connectFailed(opened)  // resolution failed
        XCTAssertNil(t[opened], "an opened port whose CONNECT fails no longer exists (§5.3)")
        let fresh = try success(t.connect(portID: 0, now: t0)).portID
        XCTAssertNil(t.resolved(fresh, destination: lan, address: IPAddress("192.168.77.10")))
        t.connectFailed(fresh)  // refused
        XCTAssertNil(t[fresh])
        XCTAssertEqual(t.pendingConnects, 0)
        XCTAssertEqual(refusal(t.connect(portID: opened, now: t0)), .noSuchPort(opened))
    }

    func testTheAllowListDecidesAfterResolution() throws {
        var t = table(policy: Policy(allow: [try AllowRule(parsing: "192.168.77.0/24:80")]))
        let allowed = try success(t.connect(portID: 0, now: t0)).portID
        XCTAssertNil(t.resolved(allowed, destination: lan, address: IPAddress("192.168.77.10")))
        let ssh = Endpoint(IPAddress("192.168.77.10")!, 22)
        let denied = try success(t.connect(portID: 0, now: t0)).portID
        XCTAssertEqual(t.resolved(denied, destination: ssh, address: IPAddress("192.168.77.10")), .destinationDenied(ssh))
        XCTAssertNil(t[denied])
        // A name is checked by the address it resolved to, and named as the server wrote it.
        let name = Endpoint(host: .name("intranet.example"), port: 80)
        let outside = try success(t.connect(portID: 0, now: t0)).portID
        let refused = t.resolved(outside, destination: name, address: IPAddress("10.1.2.3"))
        XCTAssertEqual(refused?.message, "intranet.example:80 is not in this mediator's --allow list")
        XCTAssertEqual(refused?.code, .deniedByPolicy)
        XCTAssertEqual(refused?.errno, 13)
        let noAddress = try success(t.connect(portID: 0, now: t0)).portID
        XCTAssertEqual(t.resolved(noAddress, destination: lan, address: nil), .destinationDenied(lan), "not an IP address: denied")
        XCTAssertEqual(t.pendingConnects, 1, "only the allowed connect is still in progress")
        XCTAssertEqual(t.portIDs, [allowed])
    }

    func testProtectedDestinationsAfterResolution() throws {
        // `--allow 192.168.77.0/24 --allow ::/0`, and a mapped loopback address named directly or by a
        // name that resolved to it.
        var t = table(policy: Policy(allow: [try AllowRule(parsing: "192.168.77.0/24"), try AllowRule(parsing: "::/0")]))
        let mapped = Endpoint(IPAddress("::ffff:127.0.0.1")!, 22)
        let direct = try success(t.connect(portID: 0, now: t0)).portID
        let refused = t.resolved(direct, destination: mapped, address: IPAddress("::ffff:127.0.0.1"))
        XCTAssertEqual(refused, .protectedDestination(mapped, address: IPAddress("127.0.0.1")!, .loopbackV4))
        XCTAssertEqual(
            refused?.message,
            "[::ffff:127.0.0.1]:22 (127.0.0.1) is in the loopback range 127.0.0.0/8, protected on the mediator: only an --allow rule inside it opens it"
        )
        XCTAssertEqual(refused?.code, .deniedByPolicy)
        XCTAssertEqual(refused?.errno, 13, "EACCES, like every policy refusal")
        let name = Endpoint(host: .name("sneaky.example"), port: 22)
        let byName = try success(t.connect(portID: 0, now: t0)).portID
        XCTAssertEqual(
            t.resolved(byName, destination: name, address: IPAddress("::ffff:127.0.0.1")),
            .protectedDestination(name, address: IPAddress("127.0.0.1")!, .loopbackV4))
        let metadata = Endpoint(IPAddress("169.254.169.254")!, 80)
        let cloud = try success(t.connect(portID: 0, now: t0)).portID
        XCTAssertEqual(
            t.resolved(cloud, destination: metadata, address: IPAddress("169.254.169.254"))?.message,
            "169.254.169.254:80 is in the link-local range 169.254.0.0/16, protected on the mediator: only an --allow rule inside it opens it"
        )
        XCTAssertEqual(t.count, 0)
        XCTAssertEqual(t.pendingConnects, 0)

        // A rule that names the range opens it; its ports still decide.
        var ssh = table(policy: Policy(allow: [try AllowRule(parsing: "127.0.0.1:22")]))
        let allowed = try success(ssh.connect(portID: 0, now: t0)).portID
        XCTAssertNil(ssh.resolved(allowed, destination: mapped, address: IPAddress("::ffff:127.0.0.1")))
        let telnet = Endpoint(IPAddress("127.0.0.1")!, 23)
        let other = try success(ssh.connect(portID: 0, now: t0)).portID
        XCTAssertEqual(ssh.resolved(other, destination: telnet, address: IPAddress("127.0.0.1")), .destinationDenied(telnet))
    }

    func testOpenAndRedirectOfAProtectedAddressAreDenied() throws {
        var t = table(policy: Policy(redirectEnabled: true))
        let loopback = IPAddress("127.0.0.1")!
        XCTAssertEqual(refusal(t.open(at: loopback, now: t0)), .bindDenied(loopback, .loopbackV4))
        XCTAssertEqual(refusal(t.open(at: IPAddress("::ffff:127.0.0.1")!, now: t0)), .bindDenied(loopback, .loopbackV4))
        XCTAssertEqual(refusal(t.open(at: IPAddress("fe80::1")!, now: t0)), .bindDenied(IPAddress("fe80::1")!, .linkLocalV6))
        XCTAssertEqual(refusal(t.redirect(at: loopback, now: t0)), .bindDenied(loopback, .loopbackV4))
        XCTAssertEqual(t.count, 0, "nothing was taken")
        let denied = MediatorPortRefusal.bindDenied(loopback, .loopbackV4)
        XCTAssertEqual(
            denied.message,
            "127.0.0.1 is in the loopback range 127.0.0.0/8, protected on the mediator: only an --allow rule inside it allows binding it")
        XCTAssertEqual(denied.code, .deniedByPolicy)
        XCTAssertEqual(denied.errno, 13)
        XCTAssertNotNil(try success(t.open(at: .anyV4, now: t0)), "every interface is fine")
        XCTAssertNotNil(try success(t.open(at: .anyV6, now: t0)))
        XCTAssertNotNil(try success(t.open(at: IPAddress("192.168.77.2")!, now: t0)))
        XCTAssertNotNil(try success(t.redirect(at: .anyV4, now: t0)), "redirect of every interface is fine")

        var named = table(policy: Policy(allow: [try AllowRule(parsing: "127.0.0.0/8")]))
        XCTAssertNotNil(try success(named.open(at: loopback, now: t0)))
        XCTAssertEqual(refusal(named.open(at: IPAddress("::1")!, now: t0)), .bindDenied(IPAddress("::1")!, .loopbackV6))
    }

    func testConnectClosedWhileConnectingIsStillAnswered() throws {
        var t = table()
        // Closed while resolving: the connect is not made.
        let early = try success(t.connect(portID: 0, now: t0)).portID
        guard case .connecting = try success(t.close(portID: early)) else { return XCTFail("close returns the connecting port") }
        let whileResolving = t.resolved(early, destination: lan, address: IPAddress("192.168.77.10"))
        XCTAssertEqual(whileResolving, .closedWhileConnecting(early))
        XCTAssertEqual(whileResolving?.message, "port \(early) was closed while connecting")
        XCTAssertEqual(whileResolving?.code, .connectionReset)
        XCTAssertEqual(whileResolving?.errno, 103, "ECONNABORTED")
        // Closed while the socket connects: the connection is refused.
        let late = try success(t.connect(portID: 0, now: t0)).portID
        XCTAssertNil(t.resolved(late, destination: lan, address: IPAddress("192.168.77.10")))
        _ = try success(t.close(portID: late))
        XCTAssertEqual(t.connected(late, stream: "conn"), .closedWhileConnecting(late))
        XCTAssertNil(t[late], "the connection is not kept")
        // Closed, then the connect fails: nothing to undo.
        let failing = try success(t.connect(portID: 0, now: t0)).portID
        _ = try success(t.close(portID: failing))
        t.connectFailed(failing)
        XCTAssertEqual(t.pendingConnects, 0)
        XCTAssertEqual(t.count, 0)
    }

    // MARK: - LISTEN and accepted connections

    func testListenThenAcceptConnections() throws {
        var t = table()
        let id = try openReserved(&t, "bound")
        XCTAssertEqual(try success(t.listen(portID: id, now: t0)), "bound")
        XCTAssertEqual(t[id]?.kind, .startingToListen)
        XCTAssertEqual(refusal(t.accept(on: id)), .noSuchPort(id), "not accepting before it listens")
        XCTAssertNil(t.listening(id, listener: "listener"))
        XCTAssertEqual(t[id]?.kind, .listener)
        let child = try success(t.accept(on: id))
        XCTAssertEqual(t[child]?.kind, .opening)
        XCTAssertTrue(t.accepted(child, stream: "child"))
        XCTAssertEqual(t[child]?.kind, .stream)
        // Closing the listener leaves the connections it accepted.
        guard case .listener("listener") = try success(t.close(portID: id)) else { return XCTFail("close returns the listener") }
        XCTAssertEqual(t[child]?.kind, .stream)
        XCTAssertEqual(refusal(t.accept(on: id)), .noSuchPort(id))
    }

    func testAListenTheKernelRefusesReleasesThePort() throws {
        var t = table()
        let id = try openReserved(&t, "bound")
        _ = try success(t.listen(portID: id, now: t0))
        t.listenFailed(id)
        XCTAssertNil(t[id])
        XCTAssertEqual(refusal(t.listen(portID: id, now: t0)), .noSuchPort(id))
    }

    func testListenClosedBeforeItListensIsStillAnswered() throws {
        var t = table()
        let id = try openReserved(&t, "bound")
        _ = try success(t.listen(portID: id, now: t0))
        guard case .startingToListen("bound") = try success(t.close(portID: id)) else {
            return XCTFail("close returns the socket, for its address")
        }
        let refused = t.listening(id, listener: "listener")
        XCTAssertEqual(refused, .closedBeforeListening(id))
        XCTAssertEqual(refused?.code, .connectionReset)
        XCTAssertEqual(refused?.errno, 103)
        XCTAssertEqual(refused?.message, "port \(id) was closed before it was listening")
        XCTAssertNil(t[id], "the listener is not kept")
    }

    // MARK: - Ending

    func testCloseReturnsEachKindWithItsHandle() throws {
        var t = table()
        let reserved = try openReserved(&t, "r")
        let connecting = try success(t.connect(portID: 0, now: t0)).portID
        let stream = try openStream(&t, "s")
        let listener = try openListener(&t, "l")
        let datagram = try success(t.open(at: .anyV4, now: t0))
        XCTAssertTrue(t.opened(datagram, datagram: "d"))
        var closed: [String] = []
        for id in [reserved, connecting, stream, listener, datagram] {
            switch try success(t.close(portID: id)) {
            case .reserved(let r): closed.append("reserved \(r)")
            case .connecting: closed.append("connecting")
            case .stream(let s): closed.append("stream \(s)")
            case .listener(let l): closed.append("listener \(l)")
            case .datagram(let d): closed.append("datagram \(d)")
            case .opening, .startingToListen: closed.append("unexpected")
            }
            XCTAssertEqual(refusal(t.close(portID: id)), .noSuchPort(id), "a second CLOSE of \(id)")
        }
        XCTAssertEqual(closed, ["reserved r", "connecting", "stream s", "listener l", "datagram d"])
        XCTAssertEqual(t.count, 0)
    }

    func testOnlyStreamsAndDatagramsEndByThemselves() throws {
        var t = table()
        let reserved = try openReserved(&t, "r")
        let connecting = try success(t.connect(portID: 0, now: t0)).portID
        let listener = try openListener(&t, "l")
        let stream = try openStream(&t, "s")
        let datagram = try success(t.open(at: .anyV4, now: t0))
        XCTAssertTrue(t.opened(datagram, datagram: "d"))
        for id in [reserved, connecting, listener, stream, datagram, 999] { t.released(id) }
        XCTAssertEqual(t.portIDs, [reserved, connecting, listener])
    }

    func testSessionEndReleasesEverything() throws {
        var t = table()
        let reserved = try openReserved(&t, "r")
        let connecting = try success(t.connect(portID: 0, now: t0)).portID
        let stream = try openStream(&t, "s")
        let listener = try openListener(&t, "l")
        let starting = try openReserved(&t, "s2")
        _ = try success(t.listen(portID: starting, now: t0))
        let binding = try success(t.open(at: .anyV4, now: t0))
        let child = try success(t.accept(on: listener))
        XCTAssertEqual(t.count, 7)
        let released = t.sessionClosed().map { "\($0.kind)" }
        XCTAssertEqual(
            released, ["reserved", "connecting", "stream", "listener", "starting to listen", "opening", "opening"],
            "every port, in id order")
        XCTAssertTrue(t.isClosed)
        XCTAssertEqual(t.count, 0)
        // Sockets that complete afterwards are not kept.
        XCTAssertFalse(t.opened(binding, datagram: "late"))
        XCTAssertFalse(t.accepted(child, stream: "late"))
        XCTAssertEqual(t.connected(connecting, stream: "late"), .closedWhileConnecting(connecting))
        XCTAssertEqual(t.listening(starting, listener: "late"), .closedBeforeListening(starting))
        XCTAssertEqual(refusal(t.accept(on: listener)), .noSuchPort(listener))
        XCTAssertEqual(t.count, 0)
        _ = (reserved, stream)
    }

    // MARK: - Pipelined CONNECT (§5.3): server-chosen port ids

    private let s1 = PortIDRange.firstServerID

    func testAPipelinedConnectTakesTheServersIDAndItsOwnCounterIsUntouched() throws {
        var t = table(pipelined: true)
        let c = try success(t.connect(portID: s1, now: t0))
        XCTAssertEqual(c.portID, 0x8000_0001)
        XCTAssertNil(c.from)
        XCTAssertEqual(t[s1]?.kind, .connecting)
        XCTAssertEqual(t.pendingConnects, 1)
        XCTAssertNil(t.resolved(s1, destination: lan, address: IPAddress("192.168.77.10")))
        XCTAssertNil(t.connected(s1, stream: "s1"))
        XCTAssertEqual(t[s1]?.kind, .stream)
        XCTAssertEqual(t.pendingConnects, 0)
        let own = try success(t.connect(portID: 0, now: t0)).portID
        XCTAssertEqual(own, 1, "the mediator's counter still starts at 1")
        XCTAssertEqual(t.lastServerPortID, s1)
    }

    func testAServerIDInUseOrUsedBeforeIsRefusedAndTheLivePortUntouched() throws {
        var t = table(pipelined: true)
        _ = try success(t.connect(portID: s1 + 1, now: t0))
        XCTAssertNil(t.resolved(s1 + 1, destination: lan, address: IPAddress("192.168.77.10")))
        XCTAssertNil(t.connected(s1 + 1, stream: "live"))
        let again = refusal(t.connect(portID: s1 + 1, now: t0))
        XCTAssertEqual(again, .serverPortIDReused(s1 + 1, last: s1 + 1))
        XCTAssertEqual(again?.code, .invalidState)
        guard case .stream("live")? = t[s1 + 1] else { return XCTFail("the live port was touched") }
        XCTAssertEqual(refusal(t.connect(portID: s1, now: t0)), .serverPortIDReused(s1, last: s1 + 1), "below the last one")
        XCTAssertEqual(
            refusal(t.connect(portID: PortIDRange.serverBit, now: t0)), .serverPortIDReused(PortIDRange.serverBit, last: s1 + 1),
            "0x8000_0000 itself is never a port")
        t.released(s1 + 1)
        XCTAssertEqual(refusal(t.connect(portID: s1 + 1, now: t0)), .serverPortIDReused(s1 + 1, last: s1 + 1), "nor after it ended")
        XCTAssertEqual(t.pendingConnects, 0, "refusals take no connect slot")
    }

    func testWithoutTheCapabilityAServerIDIsNoSuchPortAsBefore() {
        var t = table(pipelined: false)
        XCTAssertEqual(refusal(t.connect(portID: s1, now: t0)), .noSuchPort(s1))
        XCTAssertEqual(t.count, 0)
    }

    func testPipelinedConnectsMeetThePortAndPendingLimitsAndTheRate() throws {
        var t = table(maxPorts: 2, maxPendingConnects: 2, maxRequestRate: 5, pipelined: true)
        _ = try success(t.connect(portID: s1, now: t0))
        _ = try success(t.connect(portID: s1 + 1, now: t0))
        XCTAssertEqual(refusal(t.connect(portID: s1 + 2, now: t0)), .pendingConnectLimit(inProgress: 2, limit: 2))
        t.connectFailed(s1)
        _ = try openReserved(&t, "r")
        XCTAssertEqual(refusal(t.connect(portID: s1 + 3, now: t0)), .portLimit(2), "two ports held: one opened, one connecting")
        // The flood: the rate's burst of 5 is spent (3 connects, 1 open, 1 refused above).
        XCTAssertEqual(refusal(t.connect(portID: s1 + 4, now: t0)), .requestRate(limit: 5))
        XCTAssertEqual(t.count, 2)
        XCTAssertEqual(t.pendingConnects, 1)
    }

    func testAServerResetWhileConnectingFreesTheIDAndTheConnectIsAnsweredOnce() throws {
        var t = table(pipelined: true)
        _ = try success(t.connect(portID: s1, now: t0))
        t.pipelinedPortReset(s1)
        XCTAssertNil(t[s1])
        XCTAssertEqual(t.pendingConnects, 1, "the socket still exists until its connect ends")
        XCTAssertEqual(t.connected(s1, stream: "late"), .resetWhileConnecting(s1), "close the socket; FAILED answers the CONNECT")
        XCTAssertEqual(MediatorPortRefusal.resetWhileConnecting(s1).code, .connectionReset)
        XCTAssertEqual(t.pendingConnects, 0)
        XCTAssertNil(t[s1])

        _ = try success(t.connect(portID: s1 + 1, now: t0))
        t.pipelinedPortReset(s1 + 1)
        XCTAssertEqual(t.resolved(s1 + 1, destination: lan, address: IPAddress("192.168.77.10")), .resetWhileConnecting(s1 + 1))
        XCTAssertEqual(t.pendingConnects, 0)
    }

    func testPipelinedPortResetTouchesNothingElse() throws {
        var t = table(pipelined: true)
        let own = try success(t.connect(portID: 0, now: t0)).portID
        t.pipelinedPortReset(own)
        XCTAssertEqual(t[own]?.kind, .connecting, "a mediator-chosen port ends by CLOSE or its connect, not this")
        _ = try success(t.connect(portID: s1, now: t0))
        XCTAssertNil(t.resolved(s1, destination: lan, address: IPAddress("192.168.77.10")))
        XCTAssertNil(t.connected(s1, stream: "up"))
        t.pipelinedPortReset(s1)
        XCTAssertEqual(t[s1]?.kind, .stream, "once connected, the relay's end releases it (`released`)")
    }

    func testAPipelinedConnectToADeniedDestinationEndsThePort() throws {
        var t = table(policy: Policy(allow: [try AllowRule(parsing: "192.168.77.0/24:80")]), pipelined: true)
        _ = try success(t.connect(portID: s1, now: t0))
        let other = Endpoint(IPAddress("192.168.77.10")!, 22)
        XCTAssertEqual(t.resolved(s1, destination: other, address: IPAddress("192.168.77.10")), .destinationDenied(other))
        XCTAssertNil(t[s1])
        XCTAssertEqual(t.pendingConnects, 0)
    }
}
