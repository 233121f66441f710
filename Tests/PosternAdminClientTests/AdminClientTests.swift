import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import PosternCore
import PosternTLS
import XCTest

@testable import PosternAdminClient
@testable import PosternServer

/// `ctl`'s client against the real admin API handler on real sockets, plain and over TLS: it
/// moves on from an address that refuses, gives up on time, refuses a server whose key is not the
/// pinned one, and reads the event stream line by line.
final class AdminClientTests: XCTestCase {
    private let token = "0123456789abcdef0123456789abcdef"
    private var group: MultiThreadedEventLoopGroup!
    private var servers: [Channel] = []
    private var accepted = LockedBox<[Channel]>([])
    private var registry: MediatorRegistry!
    private var directory: String!
    private var descriptors: [CInt] = []

    override func setUp() {
        group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        registry = MediatorRegistry(events: EventLog(clock: { Date(timeIntervalSince1970: 0) }), logger: Logger(label: "test"))
        directory = NSTemporaryDirectory() + "postern-admin-client-\(UUID().uuidString)"
    }

    override func tearDown() {
        for s in servers { try? s.close().wait() }
        for c in accepted.value { try? c.close().wait() }
        try? group.syncShutdownGracefully()
        try? FileManager.default.removeItem(atPath: directory)
        for fd in descriptors { close(fd) }
    }

    /// The admin API on 127.0.0.1 (a free port), over TLS with `identity`.
    private func startAdmin(tls identity: ServerIdentity? = nil) throws -> Int {
        let transport = try identity.map { try TLSServerTransport(identity: $0) }
        let registry = registry!
        let accepted = accepted
        let channel = try ServerBootstrap(group: group)
            .childChannelInitializer { channel in
                accepted.value.append(channel)
                let hosts = AdminHostRule(port: UInt16(channel.localAddress?.port ?? 0), addresses: [.v4(0x7f00_0001)])
                let access = AdminAccess(token: AdminToken(Array(self.token.utf8)), hosts: hosts)
                do {
                    if let transport { try channel.pipeline.syncOperations.addHandlers(try transport.serverConnection().handlers) }
                } catch {
                    return channel.eventLoop.makeFailedFuture(error)
                }
                return channel.pipeline.configureHTTPServerPipeline().flatMap {
                    channel.pipeline.addHandler(
                        AdminAPI(registry: registry, access: access, limits: AdminLimits(), logger: Logger(label: "test")))
                }
            }
            .bind(host: "127.0.0.1", port: 0).wait()
        servers.append(channel)
        return try XCTUnwrap(channel.localAddress?.port)
    }

    /// A listener that accepts and never says anything.
    private func startSilent() throws -> Int {
        let channel = try ServerBootstrap(group: group).bind(host: "127.0.0.1", port: 0).wait()
        servers.append(channel)
        return try XCTUnwrap(channel.localAddress?.port)
    }

    /// A port on 127.0.0.1 where nothing listens (bound once, then closed).
    private func closedPort() throws -> Int {
        let channel = try ServerBootstrap(group: group).bind(host: "127.0.0.1", port: 0).wait()
        let port = try XCTUnwrap(channel.localAddress?.port)
        try channel.close().wait()
        return port
    }

    /// A port on 127.0.0.1 whose accept queue is full (backlog 0, one connection waiting, never
    /// accepted): the kernel drops further SYNs, so a connect there hangs, like one to an address
    /// whose packets go nowhere. Closed in tearDown.
    private func unansweredPort() throws -> Int {
        func address(_ port: UInt16) -> sockaddr_in {
            var a = sockaddr_in()
            a.sin_family = sa_family_t(AF_INET)
            a.sin_addr.s_addr = inet_addr("127.0.0.1")
            a.sin_port = port.bigEndian
            return a
        }
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        XCTAssertGreaterThanOrEqual(listener, 0)
        descriptors.append(listener)
        var bound = address(0)
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &bound) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(listener, $0, length) == 0 && listen(listener, 0) == 0 && getsockname(listener, $0, &length) == 0
            }
        }
        XCTAssertTrue(ok, "listener: \(String(cString: strerror(errno)))")
        let port = UInt16(bigEndian: bound.sin_port)
        let filler = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        descriptors.append(filler)
        var target = address(port)
        let connected = withUnsafePointer(to: &target) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(filler, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        XCTAssertEqual(connected, 0, "filler: \(String(cString: strerror(errno)))")
        return Int(port)
    }

    private func identity() throws -> ServerIdentity {
        try ServerIdentity.loadOrCreate(directory: directory, now: Date()).0
    }

    private func failure(_ body: () throws -> Void) -> String {
        do {
            try body()
            XCTFail("expected a failure")
            return ""
        } catch {
            return "\(error)"
        }
    }

    func testPlainRequestWithTheToken() throws {
        let port = try startAdmin()
        let client = try AdminClient(url: "http://127.0.0.1:\(port)", token: token)
        let (status, body) = try client.request("GET", "/v1/mediators")
        XCTAssertEqual(status, 200)
        XCTAssertEqual((try JSONSerialization.jsonObject(with: body) as? [Any])?.count, 0)
        let refused = try AdminClient(url: "127.0.0.1:\(port)", token: nil).request("GET", "/v1/mediators")
        XCTAssertEqual(refused.status, 401, "the refusal comes back as an answer, not an error")
    }

    func testPostCarriesItsJSONBody() throws {
        let port = try startAdmin()
        let client = try AdminClient(url: "http://127.0.0.1:\(port)", token: token)
        let (status, body) = try client.request("POST", "/v1/mediators/acme/open", body: Data(#"{"port":0}"#.utf8))
        XCTAssertEqual(status, 404, String(decoding: body, as: UTF8.self))
        XCTAssertTrue(String(decoding: body, as: UTF8.self).contains("mediator 'acme' is not connected"))
    }

    func testFirstAddressRefusesSecondAnswers() throws {
        let port = try startAdmin()
        var client = try AdminClient(url: "http://127.0.0.1:\(port)", token: token)
        client.addressesGiven = [
            try SocketAddress(ipAddress: "127.0.0.1", port: try closedPort()), try SocketAddress(ipAddress: "127.0.0.1", port: port),
        ]
        XCTAssertEqual(try client.request("GET", "/v1/mediators").status, 200)
    }

    func testAnAddressThatDoesNotAnswerIsGivenUpAfterTheConnectTimeout() throws {
        let port = try startAdmin()
        var client = try AdminClient(url: "http://127.0.0.1:\(port)", token: token)
        client.connectTimeout = .milliseconds(300)
        let silent = try unansweredPort()
        client.addressesGiven = [
            try SocketAddress(ipAddress: "127.0.0.1", port: silent), try SocketAddress(ipAddress: "127.0.0.1", port: port),
        ]
        let start = Date()
        XCTAssertEqual(try client.request("GET", "/v1/mediators").status, 200)
        XCTAssertLessThan(Date().timeIntervalSince(start), 5, "the first address held the request")
        client.addressesGiven = [try SocketAddress(ipAddress: "127.0.0.1", port: silent)]
        XCTAssertEqual(
            failure { _ = try client.request("GET", "/v1/mediators") },
            "cannot reach the admin API at 127.0.0.1:\(port): no answer within 0.3 s (connect timeout) (is the server running with --admin?)"
        )
    }

    func testEveryAddressFailingIsReportedWithEachReason() throws {
        var client = try AdminClient(url: "http://localhost:7070", token: token)
        let (a, b) = (try closedPort(), try closedPort())
        client.addressesGiven = [try SocketAddress(ipAddress: "127.0.0.1", port: a), try SocketAddress(ipAddress: "127.0.0.1", port: b)]
        let text = failure { _ = try client.request("GET", "/v1/mediators") }
        XCTAssertTrue(text.hasPrefix("cannot reach the admin API at localhost:7070: "), text)
        XCTAssertTrue(text.contains("127.0.0.1:\(a): Connection refused; 127.0.0.1:\(b): Connection refused"), text)
        XCTAssertTrue(text.hasSuffix("(is the server running with --admin?)"), text)
    }

    func testSingleRefusingAddressKeepsTheFamiliarMessage() throws {
        let port = try closedPort()
        let client = try AdminClient(url: "http://127.0.0.1:\(port)", token: token)
        let text = failure { _ = try client.request("GET", "/v1/status") }
        XCTAssertEqual(text, "cannot reach the admin API at 127.0.0.1:\(port): Connection refused (is the server running with --admin?)")
    }

    func testSilentServerTimesOut() throws {
        let port = try startSilent()
        var client = try AdminClient(url: "http://127.0.0.1:\(port)", token: token)
        client.timeout = .milliseconds(500)
        let start = Date()
        let text = failure { _ = try client.request("GET", "/v1/status") }
        XCTAssertEqual(text, "the admin API at 127.0.0.1:\(port) did not answer within 0.5 s (--admin-timeout)")
        XCTAssertLessThan(Date().timeIntervalSince(start), 5)
    }

    func testSilentServerTimesOutAStreamBeforeItStarts() throws {
        let port = try startSilent()
        var client = try AdminClient(url: "http://127.0.0.1:\(port)", token: token)
        client.timeout = .milliseconds(300)
        let text = failure { try client.stream("/v1/events") { _ in } }
        XCTAssertTrue(text.contains("did not answer within 0.3 s"), text)
    }

    func testEventStreamDeliversLinesAndEndsWhenTheServerCloses() throws {
        let port = try startAdmin()
        let registry = registry!
        try group.next().submit {
            registry.events.post(ServerEvent(mediator: "acme", kind: "opened", port: 7, detail: "first"))
            registry.events.post(ServerEvent(mediator: "acme", kind: "closed", port: 7, detail: "second"))
        }.wait()
        let client = try AdminClient(url: "http://127.0.0.1:\(port)", token: token)
        let lines = LockedBox<[String]>([])
        let two = expectation(description: "two lines")
        let ended = expectation(description: "stream ended")
        Thread {
            do {
                try client.stream("/v1/events?history=1") { line in
                    lines.value.append(line)
                    if lines.value.count == 2 { two.fulfill() }
                }
                ended.fulfill()
            } catch {
                XCTFail("stream: \(error)")
            }
        }.start()
        wait(for: [two], timeout: 10)
        XCTAssertTrue(lines.value[0].contains(#""detail":"first""#), lines.value[0])
        XCTAssertTrue(lines.value[1].contains(#""detail":"second""#), lines.value[1])
        for c in accepted.value { try c.close().wait() }
        wait(for: [ended], timeout: 10)
    }

    func testEventStreamRefusedWithoutToken() throws {
        let port = try startAdmin()
        let client = try AdminClient(url: "http://127.0.0.1:\(port)", token: nil)
        // With the server's reason, as the other commands show it: the status line alone did not say
        // where ctl looks for the token.
        XCTAssertEqual(
            failure { try client.stream("/v1/events") { _ in } },
            "event stream refused: HTTP/1.1 401 Unauthorized: a valid bearer token is required (ctl reads it from STATE_DIR/admin.token, $POSTERN_ADMIN_TOKEN or --token-file)"
        )
    }

    // MARK: - HTTPS

    func testHTTPSWithThePinnedKey() throws {
        let identity = try identity()
        let port = try startAdmin(tls: identity)
        var client = try AdminClient(url: "https://127.0.0.1:\(port)", token: token)
        client.tls = try AdminClientTLS(trust: .pinned(identity.fingerprint, source: "--admin-pin"))
        XCTAssertEqual(try client.request("GET", "/v1/mediators").status, 200)
    }

    func testHTTPSWithAWrongPinIsRefusedBeforeAnythingIsSent() throws {
        let identity = try identity()
        let port = try startAdmin(tls: identity)
        let wrong = try XCTUnwrap(KeyFingerprint(bytes: [UInt8](repeating: 0xab, count: 32)))
        var client = try AdminClient(url: "https://127.0.0.1:\(port)", token: token)
        client.tls = try AdminClientTLS(trust: .pinned(wrong, source: "--admin-pin"))
        let text = failure { _ = try client.request("GET", "/v1/mediators") }
        XCTAssertEqual(
            text,
            "REFUSING the admin API at 127.0.0.1:\(port): it presented TLS key \(identity.fingerprint), but \(wrong) is pinned (--admin-pin); nothing was sent"
        )
    }

    func testHTTPSWithACAThatDoesNotNameTheAddressIsRefused() throws {
        // The generated certificate names "postern-server" only: as a CA for 127.0.0.1 it must fail.
        let identity = try identity()
        let port = try startAdmin(tls: identity)
        var client = try AdminClient(url: "https://127.0.0.1:\(port)", token: token)
        client.tls = try AdminClientTLS(trust: .certificateAuthority(file: directory + "/server.crt"))
        let text = failure { _ = try client.request("GET", "/v1/mediators") }
        XCTAssertTrue(text.hasPrefix("TLS handshake failed"), text)
    }

    func testHTTPSWithoutAWayToVerifyIsRefused() throws {
        let port = try startAdmin(tls: try identity())
        let client = try AdminClient(url: "https://127.0.0.1:\(port)", token: token)
        XCTAssertEqual(
            failure { _ = try client.request("GET", "/v1/mediators") },
            "https:// needs a way to verify the admin API's certificate: --admin-pin or --admin-ca")
    }

    func testHTTPSToAPlainAdminAPISaysSo() throws {
        let port = try startAdmin()
        var client = try AdminClient(url: "https://127.0.0.1:\(port)", token: token)
        client.tls = try AdminClientTLS(trust: .pinned(try identity().fingerprint, source: "--admin-pin"))
        client.timeout = .seconds(10)
        let text = failure { _ = try client.request("GET", "/v1/mediators") }
        XCTAssertTrue(text.contains("does not speak TLS"), text)
    }

    func testPlainHTTPToATLSAdminAPIFails() throws {
        let port = try startAdmin(tls: try identity())
        var client = try AdminClient(url: "http://127.0.0.1:\(port)", token: token)
        client.timeout = .seconds(10)
        let text = failure { _ = try client.request("GET", "/v1/mediators") }
        XCTAssertTrue(text.contains("use https://") || text.contains("no valid HTTP response"), text)
    }
}
