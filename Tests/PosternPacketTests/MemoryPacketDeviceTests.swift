import NIOCore
import PosternPacket
import XCTest

final class MemoryPacketDeviceTests: XCTestCase {
    func packet(_ n: Int, fill: UInt8 = 0x45) -> ByteBuffer { ByteBuffer(bytes: [UInt8](repeating: fill, count: n)) }

    func testWhatOneEndWritesTheOtherReadsInBatches() async throws {
        let (a, b) = await MemoryPacketDevice.pair(batchSize: 4)
        XCTAssertEqual(a.name, "mem0")
        XCTAssertEqual(b.name, "mem1")
        let sent = (0..<10).map { packet(20 + $0) }
        try await a.write(sent)
        var got: [ByteBuffer] = []
        while got.count < 10 {
            let batch = try await b.read()
            XCTAssertTrue((1...4).contains(batch.count), "a batch holds 1 to batchSize packets")
            got += batch
        }
        XCTAssertEqual(got, sent, "in order, intact")
        try await b.write([packet(30)])
        let back = try await a.read()
        XCTAssertEqual(back, [packet(30)])
    }

    func testReadWaitsForAPacket() async throws {
        let (a, b) = await MemoryPacketDevice.pair()
        let reading = Task { try await b.read() }
        try await Task.sleep(nanoseconds: 20_000_000)
        try await a.write([packet(40)])
        let got = try await reading.value
        XCTAssertEqual(got, [packet(40)])
    }

    func testWriteRejectsPacketsOverTheMTU() async throws {
        let (a, b) = await MemoryPacketDevice.pair(mtu: 100)
        do {
            try await a.write([packet(100), packet(101), packet(10)])
            XCTFail("a packet over the MTU must fail the write")
        } catch let e as PacketDeviceError {
            XCTAssertEqual(e, .packetTooLarge(size: 101, mtu: 100, written: 1))
        }
        let got = try await b.read()
        XCTAssertEqual(got, [packet(100)], "packets before the bad one went out, none after")
    }

    func testFullQueueDrops() async throws {
        let (a, b) = await MemoryPacketDevice.pair(batchSize: 100, queueCapacity: 3)
        try await a.write((0..<5).map { packet(20, fill: UInt8($0)) })
        let dropped = await b.dropped
        XCTAssertEqual(dropped, 2)
        let got = try await b.read()
        XCTAssertEqual(got, (0..<3).map { packet(20, fill: UInt8($0)) }, "the first ones are kept")
    }

    func testCloseEndsReadsWritesAndEvents() async throws {
        let (a, b) = await MemoryPacketDevice.pair()
        let reading = Task { try await b.read() }
        try await Task.sleep(nanoseconds: 20_000_000)
        await b.close()
        do {
            _ = try await reading.value
            XCTFail("a waiting read must fail on close")
        } catch let e as PacketDeviceError {
            XCTAssertEqual(e, .closed)
        }
        await assertThrowsAsync(try await b.read())
        await assertThrowsAsync(try await b.write([packet(20)]))
        try await a.write([packet(20)])  // into a closed device: dropped, as by a down link
        let dropped = await b.dropped
        XCTAssertEqual(dropped, 1)
        var events: [PacketDeviceEvent] = []
        for await e in b.events { events.append(e) }
        XCTAssertEqual(events, [.up], "the stream finishes on close")
    }

    func testEventsReportUpDownAndMTU() async throws {
        let (a, _) = await MemoryPacketDevice.pair(mtu: 1500)
        await a.setUp(false)
        await a.setMTU(1280)
        await a.setUp(true)
        let mtu = await a.mtu()
        XCTAssertEqual(mtu, 1280)
        await a.close()
        var events: [PacketDeviceEvent] = []
        for await e in a.events { events.append(e) }
        XCTAssertEqual(events, [.up, .down, .mtuChanged(1280), .up])
    }

    func testOneReaderAtATimeAndCancellation() async throws {
        let (_, b) = await MemoryPacketDevice.pair()
        let first = Task { try await b.read() }
        try await Task.sleep(nanoseconds: 20_000_000)
        do {
            _ = try await b.read()
            XCTFail("a second concurrent read must fail")
        } catch let e as PacketDeviceError {
            XCTAssertEqual(e, .concurrentRead)
        }
        first.cancel()
        do {
            _ = try await first.value
            XCTFail("a cancelled read must throw")
        } catch is CancellationError {}
        // The device is still usable after a cancelled read.
        let second = Task { try await b.read() }
        try await Task.sleep(nanoseconds: 20_000_000)
        await b.close()
        await assertThrowsAsync(try await second.value)
    }
}

func assertThrowsAsync<T>(
    _ expression: @autoclosure () async throws -> T, file: StaticString = #filePath, line: UInt = #line
) async {
    do {
        _ = try await expression()
        XCTFail("expected an error", file: file, line: line)
    } catch {}
}
