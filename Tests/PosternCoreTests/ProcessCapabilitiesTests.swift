import PosternCore
import PosternWire
import XCTest

/// What the mediator reads to report its raw features and name what is missing (docs/protocol.md
/// §4.3, §11), and which ECHOs its policy lets through (§11.3).
final class ProcessCapabilitiesTests: XCTestCase {
    /// /proc/self/status of root, then of a process run under `capsh --drop=cap_net_raw`.
    let rootStatus = """
        Name:\tpostern
        Umask:\t0022
        State:\tS (sleeping)
        Uid:\t0\t0\t0\t0
        CapInh:\t0000000000000000
        CapPrm:\t000001ffffffffff
        CapEff:\t000001ffffffffff
        CapBnd:\t000001ffffffffff
        CapAmb:\t0000000000000000
        NoNewPrivs:\t0
        """

    func testParsesTheEffectiveSet() throws {
        let root = try XCTUnwrap(ProcessCapabilities(status: rootStatus))
        XCTAssertEqual(root.effective, 0x1ff_ffff_ffff)
        XCTAssertTrue(root.hasNetRaw)
        XCTAssertTrue(root.hasNetAdmin)
        let noRaw = try XCTUnwrap(
            ProcessCapabilities(status: rootStatus.replacingOccurrences(of: "CapEff:\t000001ffffffffff", with: "CapEff:\t000001ffffffdfff"))
        )
        XCTAssertFalse(noRaw.hasNetRaw, "bit 13 is CAP_NET_RAW")
        XCTAssertTrue(noRaw.hasNetAdmin)
        let onlyAdmin = try XCTUnwrap(ProcessCapabilities(status: "CapEff:\t0000000000001000\n"))
        XCTAssertTrue(onlyAdmin.hasNetAdmin, "bit 12 is CAP_NET_ADMIN")
        XCTAssertFalse(onlyAdmin.hasNetRaw)
        XCTAssertEqual(ProcessCapabilities(status: "CapEff: 0\n")?.effective, 0)
    }

    func testRefusesStatusWithoutAReadableEffectiveSet() {
        XCTAssertNil(ProcessCapabilities(status: ""))
        XCTAssertNil(ProcessCapabilities(status: "CapPrm:\t0000000000003000\n"))
        XCTAssertNil(ProcessCapabilities(status: "CapEff:\t\n"))
        XCTAssertNil(ProcessCapabilities(status: "CapEff:\tzz\n"))
        XCTAssertNil(ProcessCapabilities(status: "CapEff:\t1ffffffffffffffff\n"), "17 digits do not fit")
    }

    func testPingGroupRange() {
        XCTAssertEqual(ProcessCapabilities.pingGroupRange("1\t0\n"), nil, "the kernel's default admits nobody")
        XCTAssertEqual(ProcessCapabilities.pingGroupRange("0\t2147483647\n"), 0...2_147_483_647)
        XCTAssertEqual(ProcessCapabilities.pingGroupRange("100 200"), 100...200)
        XCTAssertNil(ProcessCapabilities.pingGroupRange("100"))
        XCTAssertNil(ProcessCapabilities.pingGroupRange("a b"))
    }

    func testRefusalNamesWhatIsMissing() {
        XCTAssertEqual(
            ProcessCapabilities.icmpRefusal(group: 1000, pingGroupRange: "1\t0\n"),
            "ICMP echo needs CAP_NET_RAW (missing) or net.ipv4.ping_group_range to include group 1000 (now 1 0)")
        XCTAssertTrue(ProcessCapabilities.icmpRefusal(group: 0, pingGroupRange: nil).hasSuffix("(now unreadable)"))
    }

    func testEchoPolicyFollowsTheAllowRules() throws {
        func ip(_ s: String) -> IPAddress { IPAddress(s)! }
        let open = Policy()
        XCTAssertTrue(open.allowsEcho(to: ip("192.168.77.10")))
        XCTAssertTrue(open.allowsEcho(to: ip("8.8.8.8")))
        XCTAssertFalse(open.allowsEcho(to: ip("127.0.0.1")), "the mediator's own host needs a rule naming it")
        XCTAssertFalse(open.allowsEcho(to: ip("169.254.169.254")), "nor the metadata service")
        XCTAssertFalse(open.allowsEcho(to: ip("::ffff:127.0.0.1")), "normalised first")
        // A rule for one port allows pinging the host: ECHO is allowed where any port is.
        let lan = Policy(allow: [try AllowRule(parsing: "192.168.77.0/24:22")])
        XCTAssertTrue(lan.allowsEcho(to: ip("192.168.77.99")))
        XCTAssertFalse(lan.allowsEcho(to: ip("203.0.113.10")))
        XCTAssertFalse(lan.allowsEcho(to: ip("192.168.78.1")))
        let everything = Policy(allow: [try AllowRule(parsing: "0.0.0.0/0")])
        XCTAssertFalse(everything.allowsEcho(to: ip("127.0.0.1")), "a broad rule does not open loopback")
        let loopback = Policy(allow: [try AllowRule(parsing: "127.0.0.1:22")])
        XCTAssertTrue(loopback.allowsEcho(to: ip("127.0.0.1")))
        XCTAssertFalse(loopback.allowsEcho(to: ip("127.0.0.2")))
    }
}
