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

// Options are part of a forward: changing one restarts that forward alone.
extension ForwardDiffTests {
    func testChangingAnOptionRestartsThatForwardOnly() throws {
        let running = try specs("tcp:0.0.0.0:8080=acme/192.168.77.10:80,rate=1M", "tcp:0.0.0.0:8081=acme/192.168.77.11:80,proxy=v1")
        let wanted = try specs("tcp:0.0.0.0:8080=acme/192.168.77.10:80,rate=2M", "tcp:0.0.0.0:8081=acme/192.168.77.11:80,proxy=v1")
        let d = try ForwardDiff(running: running, wanted: wanted)
        XCTAssertEqual(d.unchanged.map(\.text), ["tcp:0.0.0.0:8081=acme/192.168.77.11:80,proxy=v1"])
        XCTAssertEqual(d.removed.map(\.text), ["tcp:0.0.0.0:8080=acme/192.168.77.10:80,rate=1M"])
        XCTAssertEqual(d.added.map(\.text), ["tcp:0.0.0.0:8080=acme/192.168.77.10:80,rate=2M"])
        XCTAssertEqual(d.changed.count, 1, "same listen address: stop before the successor binds")
    }

    func testAddingOrDroppingOptionsIsAChange() throws {
        for (old, new) in [
            ("tcp:8080=acme/10.0.0.1:80", "tcp:8080=acme/10.0.0.1:80,proxy=v2"),
            ("tcp:8080=acme/10.0.0.1:80,proxy=v1", "tcp:8080=acme/10.0.0.1:80,proxy=v2"),
            ("udp:5353=acme/10.0.0.1:53,allow=10.0.0.0/8", "udp:5353=acme/10.0.0.1:53"),
            ("udp:5353=acme/10.0.0.1:53,allow=10.0.0.0/8", "udp:5353=acme/10.0.0.1:53,allow=10.0.0.0/16"),
        ] {
            let d = try ForwardDiff(running: specs(old), wanted: specs(new))
            XCTAssertEqual(d.changed.count, 1, "\(old) -> \(new)")
            XCTAssertTrue(d.unchanged.isEmpty)
        }
    }

    func testOptionsSpelledOrOrderedOtherwiseChangeNothing() throws {
        let d = try ForwardDiff(
            running: specs("tcp:8080=acme/10.0.0.1:80,allow=10.0.0.0/8,allow=192.168.0.0/16,rate=1M"),
            wanted: specs("tcp:0.0.0.0:8080=acme/10.0.0.1:80,rate=1000K,allow=192.168.0.0/16,allow=10.0.0.0/8"))
        XCTAssertTrue(d.isEmpty)
    }

    func testRemoveNamesAForwardWithOrWithoutItsOptions() throws {
        let running = try ForwardSpec(parsing: "tcp:8080=acme/10.0.0.1:80,proxy=v2,rate=1M")
        XCTAssertTrue(ForwardDiff.named(running, by: try ForwardSpec(parsing: "tcp:8080=acme/10.0.0.1:80")))
        XCTAssertTrue(ForwardDiff.named(running, by: try ForwardSpec(parsing: "tcp:8080=acme/10.0.0.1:80,rate=1M,proxy=v2")))
        XCTAssertFalse(ForwardDiff.named(running, by: try ForwardSpec(parsing: "tcp:8080=acme/10.0.0.1:80,proxy=v1")))
        XCTAssertFalse(ForwardDiff.named(running, by: try ForwardSpec(parsing: "tcp:8081=acme/10.0.0.1:80")))
    }
}
