import Foundation
import Logging
import NIOCore
import NIOEmbedded
import NIOHTTP1
import XCTest

@testable import PosternServer

/// The dashboard's files through the admin API's handler: served without the token but only to a
/// `Host` the API is reached by, with a strict Content-Security-Policy; the data routes the page
/// reads still need the token; and the script puts nothing on the page as HTML.
final class DashboardTests: XCTestCase {
    private let token = "0123456789abcdef0123456789abcdef"
    private var channel: EmbeddedChannel!

    override func setUp() {
        let registry = MediatorRegistry(events: EventLog(clock: { Date(timeIntervalSince1970: 0) }), logger: Logger(label: "test"))
        let access = AdminAccess(token: AdminToken(Array(token.utf8)), hosts: AdminHostRule(port: 7070, addresses: [.v4(0x7f00_0001)]))
        channel = EmbeddedChannel()
        XCTAssertNoThrow(
            try channel.pipeline.syncOperations.addHandler(
                AdminAPI(registry: registry, access: access, limits: AdminLimits(), logger: Logger(label: "test"))))
        XCTAssertNoThrow(try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 7070)).wait())
    }

    override func tearDown() {
        _ = try? channel?.finish()
    }

    private func get(_ uri: String, bearer: String? = nil, host: String = "127.0.0.1:7070") throws -> (HTTPResponseHead, String) {
        var h = HTTPHeaders()
        h.add(name: "Host", value: host)
        if let bearer { h.add(name: "Authorization", value: "Bearer \(bearer)") }
        try channel.writeInbound(HTTPServerRequestPart.head(HTTPRequestHead(version: .http1_1, method: .GET, uri: uri, headers: h)))
        try channel.writeInbound(HTTPServerRequestPart.end(nil))
        var head: HTTPResponseHead?
        var body = ""
        while let part = try channel.readOutbound(as: HTTPServerResponsePart.self) {
            switch part {
            case .head(let h): head = h
            case .body(.byteBuffer(let b)): body += String(buffer: b)
            default: break
            }
        }
        return (try XCTUnwrap(head), body)
    }

    func testPageAndItsFilesAreServedWithoutTokenUnderAStrictPolicy() throws {
        for (path, type, marker) in [
            ("/", "text/html", "<script src=\"/dashboard.js\""), ("/dashboard", "text/html", "id=\"forwards\""),
            ("/dashboard.js", "text/javascript", "/v1/status"), ("/dashboard.css", "text/css", "table"),
        ] {
            let (head, body) = try get(path)
            XCTAssertEqual(head.status, .ok, path)
            XCTAssertTrue(head.headers["Content-Type"].first?.hasPrefix(type) == true, path)
            XCTAssertEqual(head.headers["Content-Length"].first, "\(body.utf8.count)", path)
            XCTAssertTrue(body.contains(marker), path)
            let csp = try XCTUnwrap(head.headers["Content-Security-Policy"].first, path)
            XCTAssertTrue(csp.hasPrefix("default-src 'none';"), csp)
            XCTAssertTrue(csp.contains("script-src 'self';"), csp)
            XCTAssertFalse(csp.contains("unsafe"), "no inline script or eval: \(csp)")
            XCTAssertEqual(head.headers["X-Content-Type-Options"].first, "nosniff", path)
        }
        XCTAssertTrue(channel.isActive, "public files keep the connection like any answer")
    }

    func testPageIsRefusedToAForeignHost() throws {
        let (head, body) = try get("/dashboard", host: "rebound.example:7070")
        XCTAssertEqual(head.status, .forbidden)
        XCTAssertFalse(body.contains("<html"))
    }

    func testDataTheScriptReadsStillNeedsTheToken() throws {
        let (head, _) = try get("/v1/mediators")
        XCTAssertEqual(head.status, .unauthorized)
    }

    func testOnlyTheListedFilesArePublic() throws {
        // A path that merely starts like an asset is an ordinary route: no token, no answer.
        let (head, _) = try get("/dashboard.js/../v1/mediators")
        XCTAssertEqual(head.status, .unauthorized)
    }

    func testPageHasNoInlineScriptOrStyleAndTheScriptWritesNoHTML() {
        // The policy would block an inline script or style; none must be needed.
        XCTAssertNil(Dashboard.html.range(of: #"<script(?![^>]*\bsrc=)"#, options: .regularExpression))
        XCTAssertFalse(Dashboard.html.contains("<style"))
        XCTAssertFalse(Dashboard.html.contains(" style="))
        XCTAssertNil(Dashboard.html.range(of: #"\son[a-z]+="#, options: .regularExpression), "no inline event handlers")
        // Data from mediators reaches the page only as text.
        for sink in ["innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "Function(", "srcdoc"] {
            XCTAssertFalse(Dashboard.script.contains(sink), sink)
        }
        XCTAssertTrue(Dashboard.script.contains("textContent"))
    }
}
