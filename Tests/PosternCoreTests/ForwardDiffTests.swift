import PosternCore
import XCTest

/// The reload diff: which forwards stay (and keep their connections), which stop, which start; a
/// configuration with two forwards on one listen address is refused whole.
final class ForwardDiffTests: XCTestCase {
    private func specs(_ texts: String...) throws -> [ForwardSpec] { try texts.map { try ForwardSpec(parsing: $0) } }

    func testUnchangedAddedRemoved() throws {
        let running = try specs(
            "tcp:0.0.0.0:8080=acme/192.168.77.10:80", "udp:0.0.0.0:5353=acme/192.168.77.10:53", "tcp:acme/0.0.0.0:2222=127.0.0.1:22")
        let wanted = try specs(
            "tcp:0.0.0.0:8080=acme/192.168.77.10:80", "tcp:acme/0.0.0.0:2222=127.0.0.1:22", "tcp:0.0.0.0:9090=beta/10.0.0.1:90")
        let d = try ForwardDiff(running: running, wanted: wanted)
        XCTAssertEqual(d.unchanged.map(\.text), ["tcp:0.0.0.0:8080=acme/192.168.77.10:80", "tcp:acme/0.0.0.0:2222=127.0.0.1:22"])
        XCTAssertEqual(d.removed.map(\.text), ["udp:0.0.0.0:5353=acme/192.168.77.10:53"])
        XCTAssertEqual(d.added.map(\.text), ["tcp:0.0.0.0:9090=beta/10.0.0.1:90"])
        XCTAssertTrue(d.changed.isEmpty)
        XCTAssertFalse(d.isEmpty)
    }

    func testSameConfigurationChangesNothing() throws {
        let all = try specs("tcp:0.0.0.0:8080=acme/192.168.77.10:80", "udp:acme/0.0.0.0:5000=203.0.113.10:5000")
        let d = try ForwardDiff(running: all, wanted: all.reversed())
        XCTAssertTrue(d.isEmpty)
        XCTAssertEqual(d.unchanged.count, 2)
    }

    func testSpellingDoesNotMakeAChange() throws {
        let d = try ForwardDiff(
            running: specs("tcp:[::]:8080=acme/[2001:db8::1]:80"), wanted: specs("tcp:[0::0]:08080=acme/[2001:0db8:0:0::1]:0080"))
        XCTAssertTrue(d.isEmpty, "the same forward spelled differently stays")
    }

    func testNewTargetOnTheSameAddressIsAChange() throws {
        let d = try ForwardDiff(
            running: specs("tcp:0.0.0.0:8080=acme/192.168.77.10:80"), wanted: specs("tcp:0.0.0.0:8080=acme/192.168.77.11:80"))
        XCTAssertEqual(d.removed.map(\.text), ["tcp:0.0.0.0:8080=acme/192.168.77.10:80"])
        XCTAssertEqual(d.added.map(\.text), ["tcp:0.0.0.0:8080=acme/192.168.77.11:80"])
        XCTAssertEqual(
            d.changed.map { "\($0.old) -> \($0.new)" }, ["tcp:0.0.0.0:8080=acme/192.168.77.10:80 -> tcp:0.0.0.0:8080=acme/192.168.77.11:80"]
        )
    }

    func testMediatorSideForwardsOfDifferentMediatorsDoNotCollide() throws {
        let d = try ForwardDiff(running: [], wanted: specs("tcp:acme/0.0.0.0:22=127.0.0.1:22", "tcp:beta/0.0.0.0:22=127.0.0.1:2222"))
        XCTAssertEqual(d.added.count, 2)
    }

    func testTwoForwardsOnOneAddressAreRefused() throws {
        XCTAssertThrowsError(
            try ForwardDiff(
                running: specs("tcp:0.0.0.0:8080=acme/192.168.77.10:80"),
                wanted: specs("tcp:0.0.0.0:8080=acme/192.168.77.10:80", "tcp:0.0.0.0:8080=beta/10.0.0.1:80"))
        ) { error in
            XCTAssertTrue("\(error)".contains("listen on the same address"), "\(error)")
        }
        XCTAssertThrowsError(
            try ForwardDiff(running: [], wanted: specs("tcp:acme/0.0.0.0:22=127.0.0.1:22", "tcp:acme/0.0.0.0:22=127.0.0.1:2222")))
        // TCP and UDP on one port number are different sockets.
        XCTAssertNoThrow(try ForwardDiff(running: [], wanted: specs("tcp:0.0.0.0:53=acme/10.0.0.1:53", "udp:0.0.0.0:53=acme/10.0.0.1:53")))
    }
}
