import PosternReplay
import XCTest

@testable import postern

/// `postern replay --to HOST:PORT` with a name that does not resolve: a runtime failure in words
/// (exit 2), not a usage error carrying NIO's `SocketAddressError.UnknownHost: ... (error -2) for host`.
final class ReplayAddressTests: XCTestCase {
    func testAnUnresolvableNameIsRefusedInWords() {
        do {
            _ = try ReplayCommand.address("nohost.invalid:80", "--to")
            XCTFail("resolved nohost.invalid")
        } catch let failure as ReplayFailure {
            XCTAssertTrue(
                failure.reason.hasPrefix("--to nohost.invalid:80: cannot resolve 'nohost.invalid': "), failure.reason)
            XCTAssertFalse(failure.reason.contains("SocketAddressError"), failure.reason)
        } catch {
            XCTFail("not a ReplayFailure: \(error)")
        }
    }

    func testAnAddressIsTaken() throws {
        let address = try ReplayCommand.address("203.0.113.10:8000", "--to")
        XCTAssertEqual(address.port, 8000)
        XCTAssertEqual(address.ipAddress, "203.0.113.10")
    }
}
