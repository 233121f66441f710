import PosternCore
import XCTest

final class DatagramPeerMemoryTests: XCTestCase {
    func testRemembersPeers() {
        var memory = DatagramPeerMemory<Int>()
        XCTAssertEqual(memory.capacity, 4096)
        XCTAssertFalse(memory.contains(1))
        memory.remember(1)
        XCTAssertTrue(memory.contains(1))
        memory.remember(1)
        XCTAssertEqual(memory.count, 1)
    }

    func testForgetsTheOldestHalfWhenFull() {
        var memory = DatagramPeerMemory<Int>(capacity: 8)
        for p in 0..<8 { memory.remember(p) }
        XCTAssertEqual(memory.count, 8)
        memory.remember(0)  // refreshed: now the most recent
        memory.remember(8)  // the ninth: the oldest half goes
        XCTAssertEqual(memory.count, 4)
        XCTAssertTrue(memory.contains(0), "a refreshed peer is kept")
        XCTAssertTrue(memory.contains(8))
        XCTAssertTrue(memory.contains(7))
        XCTAssertTrue(memory.contains(6))
        XCTAssertFalse(memory.contains(1))
        XCTAssertFalse(memory.contains(5))
    }

    func testNeverHoldsMoreThanItsCapacity() {
        var memory = DatagramPeerMemory<Int>(capacity: 4096)
        for p in 0..<100_000 {
            memory.remember(p)
            if memory.count > 4096 { return XCTFail("holds \(memory.count) peers") }
        }
        XCTAssertTrue(memory.contains(99_999))
    }
}
