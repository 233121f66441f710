import NIOCore
import PosternCore
import PosternServer
import XCTest

/// A reload applies forwards and SOCKS5 listeners; what else the configuration changes is named, so
/// `ctl reload` and the log can say it needs a restart instead of answering "unchanged" for all.
final class SettingsNeedingRestartTests: XCTestCase {
    private func configuration(secret: String = "a-secret-of-enough-length") -> ServerConfiguration {
        ServerConfiguration(
            listen: ListenAddress(.v4(0x7f00_0001), 7000), secrets: SecretBook(shared: Array(secret.utf8)), admin: nil,
            forwards: [], softwareVersion: "test")
    }

    func testTheSameSettingsNeedNothing() {
        XCTAssertEqual(configuration().settingsNeedingRestart(running: configuration()), [])
    }

    func testForwardsAndSOCKSAreNotAmongThem() throws {
        var read = configuration()
        read.forwards = [try ForwardSpec(parsing: "tcp:0.0.0.0:8080=acme/10.0.0.1:80")]
        read.socksNoAuth = true
        XCTAssertEqual(read.settingsNeedingRestart(running: configuration()), [])
    }

    func testChangedSettingsAreNamedAsTheConfigFileNamesThem() {
        let running = configuration()
        var read = configuration(secret: "another-secret-of-enough-length")
        read.settings.keepaliveInterval = .seconds(3)
        read.settings.deadTimeout = .seconds(9)
        read.listen = ListenAddress(.v4(0x7f00_0001), 7001)
        read.udpMaxFlows = 17
        read.threads = running.threads + 1
        XCTAssertEqual(
            read.settingsNeedingRestart(running: running),
            ["listen", "secret-file", "keepalive", "dead-timeout", "udp-max-flows", "threads"])
    }

    func testAForwardNamingAMediatorWithoutASecretIsWarnedAbout() throws {
        let named = try SecretBook.parse("acme a-secret-of-enough-length\nbeta another-secret-long-enough\n", source: "s")
        XCTAssertNil(named.unknownMediatorWarning("acme", in: "forward x"))
        let warning = try XCTUnwrap(named.unknownMediatorWarning("acm", in: "forward tcp:8080=acm/10.0.0.1:80"))
        XCTAssertTrue(warning.hasPrefix("forward tcp:8080=acm/10.0.0.1:80 names mediator 'acm', which has no secret"), warning)
        XCTAssertTrue(warning.contains("(it has secrets for acme, beta)"), warning)
        XCTAssertFalse(warning.contains("a-secret-of-enough-length"), "a warning never shows a secret")
        // One shared secret admits every name: nothing to warn about.
        XCTAssertNil(SecretBook(shared: Array("a-secret-of-enough-length".utf8)).unknownMediatorWarning("anyone", in: "forward x"))
    }
}
