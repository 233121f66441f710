import NIOCore
import PosternWire
import XCTest

/// The additive TUN mode extensions (docs/protocol.md §10.1, §10.5; vectors §8.30-8.32): TUN's flags
/// byte, TUN_READY's second address, TUN_STATS; what a forged or oversized one gets.
final class TunExtensionFrameTests: XCTestCase {
    typealias Prefix = MediatorEnvironment.AddressPrefix

    func testRoundTrips() {
        assertRoundTrip(.tun(.init(requestID: 1, mtu: 1400, flags: [])))
        assertRoundTrip(.tun(.init(requestID: 1, mtu: 1400, flags: [.ipv6, .stats])))
        // Unknown flag bits survive decoding (a mediator ignores them).
        assertRoundTrip(.tun(.init(requestID: 1, mtu: 1400, flags: .init(rawValue: 0xff))))
        assertRoundTrip(
            .tunReady(
                .init(
                    requestID: 2, mtu: 1280, address: Prefix(parsing: "192.168.77.50/24")!,
                    prefixes: [Prefix(parsing: "fd00:77::/64")!], secondAddress: Prefix(parsing: "fd00:77::50/64")!)))
        assertRoundTrip(.tunStats(.init(toLAN: .max, fromLAN: 0, errorsSent: 7, dropped: [])))
        assertRoundTrip(
            .tunStats(
                .init(
                    toLAN: 1, fromLAN: 2, errorsSent: 0, dropped: [(reason: "path", count: 9)],
                    device: .init(asked: false, offloads: 0, superPacketsRead: 0, coalescedWrites: 0, offloadRefused: .max))))
        assertRoundTrip(.tun(.init(requestID: 1, mtu: 1400, flags: [.ipv6, .stats, .deviceStats])))
        assertRoundTrip(.tunClose(.init(requestID: 3, message: "")))
        assertRoundTrip(.tunClose(.init(requestID: .max, message: "10.0.0.0/8 overlaps 10.1.0.0/16 of mediator 'b'")))
        assertRoundTrip(
            .tunStats(.init(toLAN: 1, fromLAN: 2, errorsSent: 3, dropped: (0..<16).map { (reason: "reason\($0)", count: UInt64($0)) })))
    }

    /// Without flags TUN stays the original 6 bytes, and a TUN_READY without a second address the
    /// original layout: what an older peer sends and expects. A TUN_STATS without the device part is
    /// byte for byte what it was before bit 2 existed.
    func testTheOriginalFormsAreUnchanged() {
        XCTAssertEqual(
            payload(of: .tunStats(.init(toLAN: 1, fromLAN: 2, errorsSent: 3, dropped: []))),
            [0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 3, 0])
        XCTAssertEqual(payload(of: .tun(.init(requestID: 9, mtu: 1400))), [0, 0, 0, 9, 0x05, 0x78])
        XCTAssertEqual(payload(of: .tun(.init(requestID: 9, mtu: 1400, flags: [.ipv6]))), [0, 0, 0, 9, 0x05, 0x78, 1])
        XCTAssertEqual(
            payload(of: .tunReady(.init(requestID: 9, mtu: 1400, address: Prefix(parsing: "10.0.0.5/8")!, prefixes: []))),
            [0, 0, 0, 9, 0x05, 0x78, 1, 10, 0, 0, 5, 8, 0, 0])
    }

    func testASecondAddressOfTheSameFamilyIsRefused() {
        let payload: [UInt8] = [0, 0, 0, 9, 0x05, 0x78, 1, 10, 0, 0, 5, 8, 0, 0, 1, 10, 0, 0, 6, 8]
        assertDecodeThrows(
            rawFrame(type: 0x1a, payload: payload),
            .invalidValue(field: "second address", value: "10.0.0.6 is of the first address's family"))
        // Half a second address is truncated; bytes after it are trailing.
        assertDecodeThrows(rawFrame(type: 0x1a, payload: Array(payload.dropLast(2))), .truncated(frame: "TUN_READY"))
        var v6 = [UInt8](payload.prefix(14)) + [4] + IPAddress("fd00::1")!.bytes + [64]
        assertDecodeThrows(rawFrame(type: 0x1a, payload: v6 + [0]), .trailingBytes(frame: "TUN_READY", count: 1))
        v6[15 + 16] = 129
        assertDecodeThrows(rawFrame(type: 0x1a, payload: v6), .invalidValue(field: "prefix length", value: "129"))
    }

    func testTunStatsBounds() {
        let head = [UInt8](repeating: 0, count: 24)
        // More reasons than allowed: refused before anything is read.
        assertDecodeThrows(rawFrame(type: 0x29, payload: head + [17]), .invalidValue(field: "reason count", value: "17"))
        // A count larger than what follows.
        assertDecodeThrows(
            rawFrame(type: 0x29, payload: head + [2, 0, 1, 0x61] + [UInt8](repeating: 0, count: 8)), .truncated(frame: "TUN_STATS"))
        // An empty name, a name too long, a name that is not UTF-8.
        assertDecodeThrows(
            rawFrame(type: 0x29, payload: head + [1, 0, 0] + [UInt8](repeating: 0, count: 8)), .invalidValue(field: "reason", value: ""))
        let long = [UInt8](repeating: 0x61, count: 33)
        assertDecodeThrows(
            rawFrame(type: 0x29, payload: head + [1, 0, 33] + long + [UInt8](repeating: 0, count: 8)),
            .invalidValue(field: "reason", value: String(repeating: "a", count: 32)))
        assertDecodeThrows(
            rawFrame(type: 0x29, payload: head + [1, 0, 1, 0xff] + [UInt8](repeating: 0, count: 8)),
            .invalidValue(field: "string", value: "not valid UTF-8"))
        // After the reasons comes nothing or the whole device part (§10.5): a part of it is truncated,
        // more than it trailing.
        assertDecodeThrows(rawFrame(type: 0x29, payload: head + [0, 0]), .truncated(frame: "TUN_STATS"))
        let device: [UInt8] = [1, 0, 0, 0, 0x67] + [UInt8](repeating: 0, count: 24)
        assertDecodeThrows(rawFrame(type: 0x29, payload: head + [0] + device.dropLast()), .truncated(frame: "TUN_STATS"))
        assertDecodeThrows(rawFrame(type: 0x29, payload: head + [0] + device + [0]), .trailingBytes(frame: "TUN_STATS", count: 1))
        assertDecodeThrows(
            rawFrame(type: 0x29, payload: head + [0, 2] + device.dropFirst()), .invalidValue(field: "offloads asked", value: "2"))
        assertDecodeThrows(rawFrame(type: 0x29, payload: Array(head.prefix(23))), .truncated(frame: "TUN_STATS"))
        // The encoder never writes what the decoder refuses: at most 16 reasons, names cut to 32 bytes.
        let big = Frame.tunStats(
            .init(
                toLAN: 0, fromLAN: 0, errorsSent: 0,
                dropped: (0..<40).map { (reason: String(repeating: "x", count: 40) + "\($0)", count: UInt64(1)) }))
        guard case .tunStats(let decoded)? = try? decodeOne(encode(big)) else { return XCTFail("did not decode") }
        XCTAssertEqual(decoded.dropped.count, 16)
        XCTAssertTrue(decoded.dropped.allSatisfy { $0.reason.utf8.count == 32 })
    }

    func testTunCloseBounds() {
        assertDecodeThrows(rawFrame(type: 0x2a, payload: [0, 0, 0, 1, 0, 5, 0x61]), .truncated(frame: "TUN_CLOSE"))
        assertDecodeThrows(rawFrame(type: 0x2a, payload: [0, 0, 0, 1, 0]), .truncated(frame: "TUN_CLOSE"))
        assertDecodeThrows(rawFrame(type: 0x2a, payload: [0, 0, 0, 1, 0, 1, 0x61, 0]), .trailingBytes(frame: "TUN_CLOSE", count: 1))
    }

    /// Random payloads for the extended frames: an error or a frame, never a crash.
    func testFuzzNeverCrashes() {
        var rng = SeededGenerator(seed: 0x7456)
        for _ in 0..<3000 {
            let type: UInt8 = [0x15, 0x1a, 0x29, 0x2a][Int(rng.next() % 4)]
            let count = Int(rng.next() % 80)
            let bytes = (0..<count).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            _ = try? decodeOne(rawFrame(type: type, payload: bytes))
        }
    }

    func testCapabilityBitSixAnnouncesTheExtensions() {
        XCTAssertEqual(MediatorEnvironment.Capabilities.tunExtensions.rawValue, 0x40)
        XCTAssertEqual(Frame.Tun.Flags.ipv6.rawValue, 1)
        XCTAssertEqual(Frame.Tun.Flags.stats.rawValue, 2)
        XCTAssertEqual(Frame.Tun.Flags.deviceStats.rawValue, 4)
    }
}
