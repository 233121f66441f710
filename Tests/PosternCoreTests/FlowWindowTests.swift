import PosternCore
import PosternWire
import XCTest

/// Per-port flow control (docs/protocol.md §6.3): the sender's credit and the receiver's batching.
final class FlowWindowTests: XCTestCase {
    // MARK: - SendWindow

    func testSendWindowStartsWithTheInitialCreditAndIsConsumed() {
        var w = SendWindow(initial: 100)
        XCTAssertEqual(w.credit, 100)
        XCTAssertTrue(w.isOpen)
        w.consume(60)
        XCTAssertEqual(w.credit, 40)
        w.consume(0)
        XCTAssertEqual(w.credit, 40)
        w.consume(40)
        XCTAssertEqual(w.credit, 0)
        XCTAssertFalse(w.isOpen)
    }

    func testGrantReopensTheWindow() throws {
        var w = SendWindow(initial: 0)
        XCTAssertFalse(w.isOpen)
        try w.grant(10)
        XCTAssertEqual(w.credit, 10)
        XCTAssertTrue(w.isOpen)
        try w.grant(5)
        XCTAssertEqual(w.credit, 15)
    }

    func testGrantUpToInt32MaxIsAccepted() throws {
        var w = SendWindow(initial: 0)
        try w.grant(UInt32(Int32.max) - 1)
        try w.grant(1)
        XCTAssertEqual(w.credit, Int(Int32.max))
    }

    func testGrantBeyondInt32MaxThrowsAndLeavesTheCredit() {
        var w = SendWindow(initial: UInt32(Int32.max))
        XCTAssertThrowsError(try w.grant(1)) { error in
            guard case WireError.invalidValue(let field, _) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(field, "window increment")
        }
        XCTAssertEqual(w.credit, Int(Int32.max))

        var small = SendWindow(initial: 10)
        XCTAssertThrowsError(try small.grant(UInt32.max))
        XCTAssertThrowsError(try small.grant(UInt32(Int32.max) - 9))
        XCTAssertEqual(small.credit, 10)
        XCTAssertNoThrow(try small.grant(UInt32(Int32.max) - 10))
    }

    // MARK: - ReceiveWindow

    func testReceivedBytesAreBufferedUpToTheWindow() throws {
        var w = ReceiveWindow(size: 1000)
        XCTAssertEqual(w.size, 1000)
        try w.received(400)
        try w.received(600)
        XCTAssertEqual(w.buffered, 1000)
    }

    func testOverrunIsReportedAndChangesNothing() throws {
        var w = ReceiveWindow(size: 1000)
        try w.received(999)
        XCTAssertThrowsError(try w.received(2)) { error in
            XCTAssertEqual(error as? ReceiveWindow.Violation, .overrun(buffered: 1001, size: 1000))
        }
        XCTAssertEqual(w.buffered, 999)
        XCTAssertNoThrow(try w.received(1))
    }

    func testConsumedButNotYetGrantedBytesStillCountAgainstTheWindow() throws {
        // The sender's credit only comes back with WINDOW, so bytes consumed but not granted are
        // still "in flight" from its point of view.
        var w = ReceiveWindow(size: 1000)
        try w.received(1000)
        XCTAssertNil(w.consumed(100))
        XCTAssertEqual(w.buffered, 900)
        XCTAssertThrowsError(try w.received(1))
        XCTAssertEqual(w.consumed(150), 250)
        XCTAssertNoThrow(try w.received(250))
        XCTAssertThrowsError(try w.received(1))
    }

    func testIncrementIsGrantedOnceAQuarterIsConsumed() throws {
        var w = ReceiveWindow(size: 1000)
        try w.received(1000)
        XCTAssertNil(w.consumed(100))
        XCTAssertNil(w.consumed(149))
        XCTAssertEqual(w.consumed(1), 250, "a quarter of the window")
        XCTAssertNil(w.consumed(249))
        XCTAssertEqual(w.consumed(300), 549, "everything pending, not just a quarter")
        XCTAssertEqual(w.buffered, 201)
    }

    func testSmallMessagesAreNotGrantedOneByOne() throws {
        // Request/response traffic: each small message drains the buffer, yet no WINDOW is due
        // until a quarter of the window has gone by.
        var w = ReceiveWindow(size: 1000)
        for _ in 0..<4 {
            try w.received(60)
            XCTAssertNil(w.consumed(60))
            XCTAssertEqual(w.buffered, 0)
        }
        try w.received(10)
        XCTAssertEqual(w.consumed(10), 250)
    }

    func testNothingIsGrantedTwiceOrForNothing() throws {
        for size: UInt32 in [1, 2, 3, 4, 5, 7] {
            var w = ReceiveWindow(size: size)
            XCTAssertNil(w.consumed(0), "size \(size): nothing consumed, nothing granted")
            try w.received(1)
            XCTAssertEqual(w.consumed(1), 1, "size \(size): a quarter of a tiny window is one byte")
            XCTAssertNil(w.consumed(0), "size \(size): the byte was already granted")
        }
        var w = ReceiveWindow(size: 1000)
        XCTAssertNil(w.consumed(0))
        try w.received(1)
        XCTAssertNil(w.consumed(1), "one byte of a 1000-byte window waits for the batch")
    }

    func testGrantsMatchConsumptionOverALongRandomExchange() throws {
        var rng = SeededGenerator(seed: 0xF10)
        for size: UInt32 in [1, 3, 4, 7, 100, 1000, 65_536] {
            var sender = SendWindow(initial: size)
            var receiver = ReceiveWindow(size: size)
            var received = 0
            var consumed = 0
            var granted = 0
            var grants = 0
            for step in 0..<20_000 {
                switch rng.next() % 3 {
                case 0:
                    guard sender.credit > 0 else { continue }
                    let n = Int.random(in: 1...sender.credit, using: &rng)
                    sender.consume(n)
                    try receiver.received(n)  // a sender within its credit never overruns
                    received += n
                case 1:
                    let n = receiver.buffered == 0 ? 0 : Int.random(in: 0...receiver.buffered, using: &rng)
                    consumed += n
                    if let increment = receiver.consumed(n) {
                        XCTAssertGreaterThan(increment, 0, "size \(size) step \(step): zero WINDOW")
                        granted += Int(increment)
                        grants += 1
                        try sender.grant(increment)
                    }
                default:
                    // The receiver never keeps back a quarter of the window or more.
                    XCTAssertLessThan(consumed - granted, max(1, Int(size) / 4), "size \(size) step \(step)")
                }
                XCTAssertLessThanOrEqual(granted, consumed, "size \(size) step \(step)")
                XCTAssertLessThanOrEqual(granted, received, "size \(size) step \(step)")
                XCTAssertEqual(sender.credit + (received - granted), Int(size), "size \(size) step \(step)")
                XCTAssertEqual(receiver.buffered, received - consumed, "size \(size) step \(step)")
            }
            if receiver.buffered > 0 {
                let n = receiver.buffered
                consumed += n
                if let increment = receiver.consumed(n) {
                    granted += Int(increment)
                    try sender.grant(increment)
                }
            }
            XCTAssertEqual(consumed, received, "size \(size)")
            XCTAssertLessThan(consumed - granted, max(1, Int(size) / 4), "size \(size): less than a quarter held back")
            XCTAssertEqual(sender.credit + (received - granted), Int(size), "size \(size): credit is conserved")
            XCTAssertGreaterThan(received, Int(size) * 100, "size \(size): the walk moved data")
            if size >= 1000 {
                XCTAssertLessThan(grants, received / (Int(size) / 8), "size \(size): WINDOW frames are batched")
            }
        }
    }
}
