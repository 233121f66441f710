import PosternWire
import XCTest

@testable import PosternNetlink

/// The undo journal: newest first, a sysctl's original value kept, refused changes forgotten, the state
/// file's lines read back exactly and forged lines never acted on.
final class UndoJournalTests: XCTestCase {
    typealias Prefix = MediatorEnvironment.AddressPrefix

    let changes: [NetworkChange] = [
        .link(name: "ptm-acme"),
        .sysctl(path: "/proc/sys/net/ipv4/conf/eth0/forwarding", previous: "0"),
        .route(interface: "ptm-acme", destination: Prefix(parsing: "192.168.77.50/32")!),
        .proxyNeighbour(interface: "eth0", address: IPAddress("192.168.77.50")!),
        .address(interface: "pts-acme", prefix: Prefix(parsing: "192.168.77.50/32")!),
    ]

    func testUndoIsNewestFirst() {
        let j = UndoJournal(changes: changes)
        XCTAssertEqual(j.undoOrder, changes.reversed())
    }

    func testSysctlKeepsTheOriginalValue() {
        var j = UndoJournal()
        j.record(.sysctl(path: "/proc/sys/net/ipv4/conf/eth0/forwarding", previous: "0"))
        // Set again later (it read "1", which we wrote): restoring must still give the original 0.
        j.record(.sysctl(path: "/proc/sys/net/ipv4/conf/eth0/forwarding", previous: "1"))
        j.record(.link(name: "a"))
        j.record(.link(name: "a"))
        XCTAssertEqual(j.changes, [.sysctl(path: "/proc/sys/net/ipv4/conf/eth0/forwarding", previous: "0"), .link(name: "a")])
    }

    func testForgetRemovesARefusedChange() {
        var j = UndoJournal(changes: changes)
        j.forget(changes[3])
        XCTAssertFalse(j.changes.contains(changes[3]))
        XCTAssertEqual(j.changes.count, 4)
    }

    func testStateFileRoundTrip() {
        let j = UndoJournal(changes: changes)
        XCTAssertEqual(
            j.text,
            """
            link ptm-acme
            sysctl /proc/sys/net/ipv4/conf/eth0/forwarding 0
            route ptm-acme 192.168.77.50/32
            proxy eth0 192.168.77.50
            address pts-acme 192.168.77.50/32

            """)
        let (back, rejected) = UndoJournal.parse(j.text)
        XCTAssertEqual(back, j)
        XCTAssertEqual(rejected, [])
    }

    /// A state file someone else wrote must not make us write anywhere but /proc/sys/net.
    func testForgedLinesAreRejected() {
        let text = """
            sysctl /etc/passwd root
            sysctl /proc/sys/net/../kernel/core_pattern x
            sysctl /proc/sys/kernel/panic 1
            route eth0 not-a-prefix
            proxy eth0 300.1.1.1
            link
            link a b c
            frobnicate x
            link ptm-acme
            """
        let (j, rejected) = UndoJournal.parse(text)
        XCTAssertEqual(j.changes, [.link(name: "ptm-acme")])
        XCTAssertEqual(rejected.count, 8)
    }
}
