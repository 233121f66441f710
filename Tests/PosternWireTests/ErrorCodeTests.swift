import PosternWire
import XCTest

/// docs/protocol.md §7.
final class ErrorCodeTests: XCTestCase {
    let table: [(UInt16, ErrorCode, String)] = [
        (1, .refused, "connection refused"), (2, .unreachable, "unreachable"), (3, .timedOut, "timed out"),
        (4, .deniedByPolicy, "denied by policy"), (5, .addressInUse, "address in use"),
        (6, .addressNotAvailable, "address not available"), (7, .noSuchPort, "no such port"),
        (8, .invalidState, "invalid state for this operation"), (9, .notSupported, "not supported"),
        (10, .limitExceeded, "limit exceeded"), (11, .resolveFailed, "name resolution failed"),
        (12, .connectionReset, "connection reset"), (13, .protocolError, "protocol error"),
        (14, .authenticationFailed, "authentication failed"), (15, .unknownMediator, "unknown mediator"),
        (16, .replaced, "replaced by a newer session"), (17, .shuttingDown, "shutting down"),
        (18, .versionMismatch, "protocol version mismatch"), (19, .keepaliveTimeout, "keepalive timeout"),
        (20, .internalError, "internal error"), (21, .permissionDenied, "permission denied"),
    ]

    func testValuesAreFixed() {
        for (raw, code, text) in table {
            XCTAssertEqual(ErrorCode(rawValue: raw), code)
            XCTAssertEqual(code.rawValue, raw)
            XCTAssertEqual(code.description, text)
        }
        XCTAssertEqual(Set(table.map(\.1)).count, table.count)
    }

    func testUnknownValuesAreKeptNotRejected() {
        for raw: UInt16 in [0, 22, 100, 999, .max] {
            let code = ErrorCode(rawValue: raw)
            XCTAssertEqual(code, .unknown(raw))
            XCTAssertEqual(code.rawValue, raw)
            XCTAssertEqual(code.description, "error \(raw)")
        }
    }

    func testEveryValueRoundTrips() {
        for raw in UInt16(0)...UInt16.max {
            XCTAssertEqual(ErrorCode(rawValue: raw).rawValue, raw)
        }
    }

    /// Linux errno values, as the mediator's sockets report them.
    func testErrnoMapping() {
        let mapping: [(Int32, ErrorCode)] = [
            (111, .refused), (101, .unreachable), (113, .unreachable), (110, .timedOut), (98, .addressInUse),
            (99, .addressNotAvailable), (104, .connectionReset), (32, .connectionReset), (13, .permissionDenied),
            (1, .permissionDenied),
        ]
        for (errno, code) in mapping {
            XCTAssertEqual(ErrorCode(errno: errno), code, "errno \(errno)")
        }
        for other: Int32 in [0, -1, 2, 11, 24, 97, 100, 112, 114, .max] {
            XCTAssertEqual(ErrorCode(errno: other), .internalError, "errno \(other)")
        }
    }

    func testWireErrorMessages() {
        XCTAssertEqual(WireError.frameTooLarge(length: 5, limit: 4).description, "frame of 5 bytes exceeds the limit of 4")
        XCTAssertEqual(WireError.unknownType(0xee).description, "unknown frame type 0xee")
        XCTAssertEqual(WireError.nonZeroFlags(type: 7, flags: 0x80).description, "frame type 0x7 has reserved flags 0x80 set")
        XCTAssertEqual(WireError.truncated(frame: "PING").description, "PING frame is truncated")
        XCTAssertEqual(WireError.trailingBytes(frame: "PING", count: 2).description, "PING frame has 2 unexpected trailing bytes")
        XCTAssertEqual(WireError.invalidValue(field: "transport", value: "7").description, "invalid transport: 7")
        XCTAssertEqual(WireError.badMagic.description, "not a Postern peer (bad magic in hello)")
    }
}
