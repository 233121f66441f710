import NIOCore
import PosternCore
import XCTest

final class DatagramFlowTableTests: XCTestCase {
    typealias Table = DatagramFlowTable<String, Int>

    let t0 = NIODeadline.uptimeNanoseconds(1_000_000_000)

    func bytes(_ s: String) -> ByteBuffer { ByteBuffer(string: s) }

    func openID(_ a: Table.Arrival, file: StaticString = #filePath, line: UInt = #line) -> DatagramFlowID? {
        guard case .open(let id) = a else {
            XCTFail("expected .open, got \(a)", file: file, line: line)
            return nil
        }
        return id
    }

    func testFirstDatagramOpensAFlowAndWaits() throws {
        var table = Table()
        let id = try XCTUnwrap(openID(table.arrived(bytes("a"), from: "p", now: t0)))
        guard case .queued = table.arrived(bytes("b"), from: "p", now: t0) else { return XCTFail("second datagram must wait") }
        XCTAssertNil(table.handle(id))
        XCTAssertEqual(table.peer(id), "p")
        let backlog = try XCTUnwrap(table.opened(id, handle: 7, now: t0))
        XCTAssertEqual(backlog, [bytes("a"), bytes("b")], "backlog in arrival order")
        XCTAssertEqual(table.handle(id), 7)
        guard case .send(7) = table.arrived(bytes("c"), from: "p", now: t0) else { return XCTFail("open flow sends at once") }
        XCTAssertEqual(table.drops.total, 0)
    }

    /// A datagram read in a batch is a slice of a megabyte buffer: what waits in a backlog is a copy
    /// the size of the datagram, so it does not keep that buffer alive.
    func testBacklogKeepsCopiesNotSlicesOfTheReadBuffer() throws {
        var table = Table()
        var batch = ByteBuffer(repeating: 0x41, count: 1 << 20)
        let first = batch.readSlice(length: 1_400)!
        let second = batch.getSlice(at: 500_000, length: 100)!
        let id = try XCTUnwrap(openID(table.arrived(first, from: "p", now: t0)))
        _ = table.arrived(second, from: "p", now: t0)
        let backlog = try XCTUnwrap(table.opened(id, handle: 1, now: t0))
        XCTAssertEqual(backlog, [first, second], "same bytes")
        for kept in backlog {
            XCTAssertLessThanOrEqual(kept.capacity, 2 * kept.readableBytes, "storage of the datagram's size, not the batch's")
        }
    }

    func testPeersGetTheirOwnFlowsWithNeverReusedIDs() throws {
        var table = Table()
        let a = try XCTUnwrap(openID(table.arrived(bytes("1"), from: "a", now: t0)))
        let b = try XCTUnwrap(openID(table.arrived(bytes("1"), from: "b", now: t0)))
        XCTAssertNotEqual(a, b)
        table.openFailed(a)
        let a2 = try XCTUnwrap(openID(table.arrived(bytes("2"), from: "a", now: t0)))
        XCTAssertNotEqual(a2, a, "a new flow of the same peer has a new id")
        XCTAssertNotEqual(a2, b)
        XCTAssertEqual(table.count, 2)
    }

    func testFlowsAreCappedAndKnownPeersGoOn() throws {
        var table = Table(limits: DatagramFlowLimits(maxFlows: 3))
        XCTAssertEqual(Table().limits.maxFlows, 256, "the default, well under the mediator's 4096 ports")
        var ids: [DatagramFlowID] = []
        for peer in ["a", "b", "c"] { ids.append(try XCTUnwrap(openID(table.arrived(bytes("1"), from: peer, now: t0)))) }
        _ = table.opened(ids[0], handle: 10, now: t0)
        guard case .overFlowLimit(log: true) = table.arrived(bytes("1"), from: "d", now: t0) else { return XCTFail("4th peer") }
        guard case .overFlowLimit(log: false) = table.arrived(bytes("2"), from: "d", now: t0) else { return XCTFail("same burst") }
        guard case .overFlowLimit(log: false) = table.arrived(bytes("1"), from: "e", now: t0) else { return XCTFail("same burst") }
        XCTAssertEqual(table.drops[.flowLimit], 3, "each refused datagram is counted")
        XCTAssertEqual(table.count, 3)
        XCTAssertFalse(table.contains("d"), "a refused peer holds nothing")
        guard case .send(10) = table.arrived(bytes("2"), from: "a", now: t0) else { return XCTFail("a known open peer still sends") }
        guard case .queued = table.arrived(bytes("2"), from: "b", now: t0) else { return XCTFail("a known opening peer still queues") }
        // A flow ends: one new peer fits again.
        table.openFailed(ids[2])
        XCTAssertNotNil(openID(table.arrived(bytes("3"), from: "d", now: t0)))
        guard case .overFlowLimit = table.arrived(bytes("1"), from: "f", now: t0) else { return XCTFail("full again") }
        XCTAssertEqual(table.count, 3)
    }

    func testTheFlowLimitIsLoggedOncePerInterval() throws {
        var table = Table(limits: DatagramFlowLimits(maxFlows: 1, flowLimitLogInterval: .seconds(30)))
        _ = table.arrived(bytes("1"), from: "a", now: t0)
        var logged: [Int] = []
        for second in 0..<100 {
            if case .overFlowLimit(log: true) = table.arrived(bytes("x"), from: "p\(second)", now: t0 + .seconds(Int64(second))) {
                logged.append(second)
            }
        }
        XCTAssertEqual(logged, [0, 30, 60, 90], "the first refusal, then at most once per interval")
        XCTAssertEqual(table.drops[.flowLimit], 100)
    }

    func testBacklogIsBounded() throws {
        var table = Table(limits: DatagramFlowLimits(maxBacklog: 64))
        let id = try XCTUnwrap(openID(table.arrived(bytes("0"), from: "p", now: t0)))
        for i in 1..<64 {
            guard case .queued = table.arrived(bytes("\(i)"), from: "p", now: t0) else { return XCTFail("datagram \(i) must wait") }
        }
        for _ in 0..<6 {
            guard case .dropped(.backlogFull) = table.arrived(bytes("x"), from: "p", now: t0) else { return XCTFail("65th must drop") }
        }
        XCTAssertEqual(table.drops[.backlogFull], 6)
        let backlog = try XCTUnwrap(table.opened(id, handle: 1, now: t0))
        XCTAssertEqual(backlog.count, 64)
        XCTAssertEqual(backlog.first, bytes("0"))
        XCTAssertEqual(backlog.last, bytes("63"))
    }

    func testOpenedAfterTheFlowEndedIsStale() throws {
        var table = Table()
        let id = try XCTUnwrap(openID(table.arrived(bytes("a"), from: "p", now: t0)))
        let swept = table.sweep(now: t0 + .seconds(61))
        XCTAssertEqual(swept.map(\.peer), ["p"])
        XCTAssertNil(swept[0].handle, "an opening flow has no port to close yet")
        XCTAssertEqual(table.drops[.notOpened], 1, "its backlog is dropped")
        XCTAssertNil(table.opened(id, handle: 9, now: t0 + .seconds(62)), "the port that opens late must be closed")
        // A newer flow of the same peer is not confused with the stale one.
        let id2 = try XCTUnwrap(openID(table.arrived(bytes("b"), from: "p", now: t0 + .seconds(62))))
        XCTAssertNil(table.opened(id, handle: 9, now: t0 + .seconds(62)))
        XCTAssertEqual(table.opened(id2, handle: 10, now: t0 + .seconds(62)), [bytes("b")])
    }

    func testOpenFailedDropsTheBacklog() throws {
        var table = Table()
        let id = try XCTUnwrap(openID(table.arrived(bytes("a"), from: "p", now: t0)))
        _ = table.arrived(bytes("b"), from: "p", now: t0)
        XCTAssertEqual(table.openFailed(id), "p")
        XCTAssertEqual(table.drops[.notOpened], 2)
        XCTAssertFalse(table.contains("p"))
        XCTAssertNil(table.openFailed(id), "a second failure report changes nothing")
        XCTAssertEqual(table.drops[.notOpened], 2)
    }

    func testIdleSweepUsesTheInjectedClockAndBothDirections() throws {
        var table = Table(limits: DatagramFlowLimits(idleTimeout: .seconds(60)))
        let a = try XCTUnwrap(openID(table.arrived(bytes("a"), from: "a", now: t0)))
        let b = try XCTUnwrap(openID(table.arrived(bytes("b"), from: "b", now: t0)))
        _ = table.opened(a, handle: 1, now: t0)
        _ = table.opened(b, handle: 2, now: t0)
        XCTAssertTrue(table.sweep(now: t0 + .seconds(60)).isEmpty, "exactly the timeout is not yet idle")
        table.touch(b, now: t0 + .seconds(30))  // a reply keeps b alive
        let swept = table.sweep(now: t0 + .seconds(61))
        XCTAssertEqual(swept.map(\.peer), ["a"])
        XCTAssertEqual(swept.map(\.handle), [1])
        XCTAssertFalse(table.contains("a"))
        XCTAssertTrue(table.contains("b"))
        _ = table.arrived(bytes("b2"), from: "b", now: t0 + .seconds(80))  // so does a datagram
        XCTAssertTrue(table.sweep(now: t0 + .seconds(91)).isEmpty)
        XCTAssertEqual(table.sweep(now: t0 + .seconds(141)).map(\.handle), [2])
        XCTAssertEqual(table.count, 0)
    }

    func testConfiguredIdleTimeout() throws {
        var table = Table(limits: DatagramFlowLimits(idleTimeout: .seconds(5)))
        let a = try XCTUnwrap(openID(table.arrived(bytes("a"), from: "a", now: t0)))
        _ = table.opened(a, handle: 1, now: t0)
        XCTAssertTrue(table.sweep(now: t0 + .seconds(5)).isEmpty)
        XCTAssertEqual(table.sweep(now: t0 + .seconds(6)).count, 1)
    }

    func testRemoveAndRemoveAll() throws {
        var table = Table()
        let a = try XCTUnwrap(openID(table.arrived(bytes("a"), from: "a", now: t0)))
        _ = table.opened(a, handle: 1, now: t0)
        _ = table.arrived(bytes("b"), from: "b", now: t0)
        XCTAssertEqual(table.remove(a)?.handle, 1)
        XCTAssertNil(table.remove(a))
        table.touch(a, now: t0)  // a removed flow is ignored
        let all = table.removeAll()
        XCTAssertEqual(all.map(\.peer), ["b"])
        XCTAssertNil(all[0].handle)
        XCTAssertEqual(table.count, 0)
    }

    func testSizeRule() {
        var drops = DatagramDrops()
        XCTAssertTrue(drops.admit(size: 100, limit: 100, pathCanTake: true))
        XCTAssertFalse(drops.admit(size: 101, limit: 100, pathCanTake: true))
        XCTAssertFalse(drops.admit(size: 10, limit: 100, pathCanTake: false))
        XCTAssertFalse(drops.admit(size: 101, limit: 100, pathCanTake: false), "oversize is counted as oversize")
        XCTAssertEqual(drops[.oversize], 2)
        XCTAssertEqual(drops[.pathFull], 1)
        XCTAssertEqual(drops.total, 3)
    }
}
