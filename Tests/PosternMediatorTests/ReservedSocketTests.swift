import NIOCore
import PosternWire
import XCTest

@testable import PosternMediator

#if canImport(Glibc)
    import Glibc
#endif

/// OPEN of a TCP port reserves it (README: `ctl open acme tcp 0.0.0.0:9100`, "error: address in use"),
/// though the reserving socket sets SO_REUSEADDR, with which Linux lets a second socket bind a port
/// neither of them listens on: a second OPEN of the port fails, a first-free one skips it.
final class ReservedSocketTests: XCTestCase {
    private let loopback = IPAddress.v4(0x7f00_0001)
    private let any = IPAddress.v4(0)

    private func assertInUse(_ body: @autoclosure () throws -> ReservedSocket, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try body(), file: file, line: line) { error in
            XCTAssertEqual((error as? IOError)?.errnoCode, EADDRINUSE, "\(error)", file: file, line: line)
        }
    }

    func testASecondOpenOfAPortIsInUseAndFirstFreeSkipsIt() throws {
        let first = try ReservedSocket.bind(address: any, port: 0, exact: true)
        let port = first.local.port
        assertInUse(try ReservedSocket.bind(address: any, port: port, exact: true))
        assertInUse(try ReservedSocket.bind(address: loopback, port: port, exact: true))
        let next = try ReservedSocket.bind(address: any, port: port, exact: false)
        XCTAssertNotEqual(next.local.port, port)
        next.close()
        // Closed, the port is free again, for an exact OPEN and a specific address alike.
        first.close()
        let again = try ReservedSocket.bind(address: loopback, port: port, exact: true)
        XCTAssertEqual(again.local.port, port)
        assertInUse(try ReservedSocket.bind(address: any, port: port, exact: true))
        again.close()
    }

    func testAListeningPortStaysTaken() throws {
        let first = try ReservedSocket.bind(address: loopback, port: 0, exact: true)
        let port = first.local.port
        let fd = try first.takeForListening(backlog: 4)
        defer { Glibc.close(fd) }
        assertInUse(try ReservedSocket.bind(address: loopback, port: port, exact: true))
    }
}
