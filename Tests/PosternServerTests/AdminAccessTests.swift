import NIOHTTP1
import PosternServer
import PosternWire
import XCTest

/// Who may use the admin API: the Host rule, the token and the content-type rule, from a request
/// head alone.
final class AdminAccessTests: XCTestCase {
    private let token = "3f1c0a9e2b7d4c5a8e6f1b0d2c4a6e8f3f1c0a9e2b7d4c5a8e6f1b0d2c4a6e8f"

    private func access(listen: String = "127.0.0.1", port: UInt16 = 7070) -> AdminAccess {
        AdminAccess(token: AdminToken(Array(token.utf8)), hosts: AdminHostRule(port: port, addresses: [IPAddress(listen)!]))
    }

    private func headers(host: String? = "127.0.0.1:7070", bearer: String?, type: String? = nil) -> HTTPHeaders {
        var h = HTTPHeaders()
        if let host { h.add(name: "Host", value: host) }
        if let bearer { h.add(name: "Authorization", value: "Bearer \(bearer)") }
        if let type { h.add(name: "Content-Type", value: type) }
        return h
    }

    func testTokenMatchesOnlyItself() {
        let t = AdminToken(Array(token.utf8))
        XCTAssertTrue(t.matches(Array(token.utf8)))
        XCTAssertFalse(t.matches(Array(token.dropLast().utf8)), "a prefix")
        XCTAssertFalse(t.matches(Array((token + "0").utf8)), "a longer string")
        XCTAssertFalse(t.matches([UInt8]()), "empty")
        XCTAssertFalse(t.matches(Array(token.uppercased().utf8)))
    }

    func testBearerScheme() {
        XCTAssertEqual(AdminToken.bearer("Bearer abc"), "abc")
        XCTAssertEqual(AdminToken.bearer("bearer abc"), "abc")
        XCTAssertEqual(AdminToken.bearer("Bearer   abc"), "abc")
        XCTAssertNil(AdminToken.bearer("Basic YWJjOmRlZg=="))
        XCTAssertNil(AdminToken.bearer("Bearer "))
        XCTAssertNil(AdminToken.bearer("Bearerabc"))
    }

    func testNoCredentialIsRefusedOnLoopback() {
        let a = access()
        XCTAssertEqual(a.check(method: .GET, headers: headers(bearer: nil)), .unauthorized)
        XCTAssertEqual(a.check(method: .GET, headers: headers(bearer: "wrong")), .unauthorized)
        XCTAssertEqual(a.check(method: .GET, headers: headers(bearer: String(token.dropLast()))), .unauthorized)
        XCTAssertNil(a.check(method: .GET, headers: headers(bearer: token)))
    }

    func testTwoAuthorizationHeadersAreRefused() {
        var h = headers(bearer: token)
        h.add(name: "Authorization", value: "Bearer \(token)")
        XCTAssertEqual(access().check(method: .GET, headers: h), .unauthorized)
    }

    func testWithoutAConfiguredTokenEverythingIsRefused() {
        let a = AdminAccess(token: nil, hosts: AdminHostRule(port: 7070, addresses: [.v4(0x7f00_0001)]))
        XCTAssertEqual(a.check(method: .GET, headers: headers(bearer: nil)), .unauthorized)
        XCTAssertEqual(a.check(method: .GET, headers: headers(bearer: "")), .unauthorized)
    }

    func testHostRule() {
        let rule = AdminHostRule(port: 7070, addresses: [IPAddress("127.0.0.1")!])
        for good in ["127.0.0.1:7070", "localhost:7070", "LOCALHOST:7070", "[::1]:7070"] {
            XCTAssertTrue(rule.allows(good), good)
        }
        for bad in [
            nil, "", "evil.example:7070", "evil.example", "127.0.0.1", "127.0.0.1:7071", "localhost:80", "127.0.0.1:7070x",
            "[::1]", "[::1:7070", "10.0.0.1:7070", "127.0.0.1.nip.io:7070", ":7070",
        ] {
            XCTAssertFalse(rule.allows(bad), bad ?? "nil")
        }
    }

    func testHostRuleOnAPublicAddressAndDualStack() {
        let rule = AdminHostRule(port: 7073, addresses: [IPAddress("203.0.113.10")!])
        XCTAssertTrue(rule.allows("203.0.113.10:7073"))
        XCTAssertFalse(rule.allows("203.0.113.11:7073"))
        // A wildcard listener learns the concrete address from the connection; a v4 client of a
        // dual-stack socket shows as ::ffff:a.b.c.d there.
        let wild = AdminHostRule(port: 7070, addresses: [.anyV6, IPAddress("::ffff:192.0.2.1")!])
        XCTAssertTrue(wild.allows("192.0.2.1:7070"))
        XCTAssertTrue(wild.allows("[::ffff:192.0.2.1]:7070"))
        XCTAssertFalse(wild.allows("[::]:7070"), "the unspecified address is never a Host")
        XCTAssertFalse(wild.allows("0.0.0.0:7070"))
        XCTAssertFalse(wild.allows("192.0.2.2:7070"))
    }

    func testForeignHostIsRefusedBeforeTheToken() {
        let a = access()
        XCTAssertEqual(a.check(method: .GET, headers: headers(host: "rebound.example:7070", bearer: token)), .foreignHost)
        XCTAssertEqual(a.check(method: .GET, headers: headers(host: "rebound.example:7070", bearer: nil)), .foreignHost)
        XCTAssertEqual(a.check(method: .GET, headers: headers(host: nil, bearer: token)), .foreignHost)
        var two = headers(bearer: token)
        two.add(name: "Host", value: "evil.example:7070")
        XCTAssertEqual(a.check(method: .GET, headers: two), .foreignHost)
    }

    func testPostNeedsJSON() {
        let a = access()
        XCTAssertEqual(a.check(method: .POST, headers: headers(bearer: token)), .unsupportedMediaType)
        for bad in ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "application/jsonx", ""] {
            XCTAssertEqual(a.check(method: .POST, headers: headers(bearer: token, type: bad)), .unsupportedMediaType, bad)
        }
        for good in ["application/json", "Application/JSON", "application/json; charset=utf-8", " application/json ;charset=UTF-8"] {
            XCTAssertNil(a.check(method: .POST, headers: headers(bearer: token, type: good)), good)
        }
        XCTAssertEqual(a.check(method: .POST, headers: headers(bearer: nil, type: "text/plain")), .unauthorized)
    }
}
