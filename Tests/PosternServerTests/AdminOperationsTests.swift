import Foundation
import Logging
import NIOCore
import NIOEmbedded
import NIOHTTP1
import PosternCore
import PosternWire
import XCTest

@testable import PosternServer

/// The admin routes behind `ctl forwards add/remove` and `ctl reload`: only a valid forward with the
/// token reaches the server; anything else is answered without touching it.
final class AdminOperationsTests: XCTestCase {
    private let token = "0123456789abcdef0123456789abcdef"
    private var calls: [(String, String)] = []
    private var loop: EmbeddedEventLoop!

    private func api(reloadFails: Bool = false) -> AdminAPI {
        loop = EmbeddedEventLoop()
        let registry = MediatorRegistry(events: EventLog(clock: { Date(timeIntervalSince1970: 0) }), logger: Logger(label: "test"))
        let access = AdminAccess(token: AdminToken(Array(token.utf8)), hosts: AdminHostRule(port: 7070, addresses: [.v4(0x7f00_0001)]))
        let loop = loop!
        return AdminAPI(
            registry: registry, access: access, limits: AdminLimits(), logger: Logger(label: "test"),
            reload: { [unowned self] in
                calls.append(("reload", ""))
                return reloadFails
                    ? loop.makeFailedFuture(ReloadError(description: "invalid forward 'x'"))
                    : loop.makeSucceededFuture(ReloadResult(unchanged: [], added: [], removed: []))
            },
            changeForward: { [unowned self] op, spec in
                calls.append((op, spec.text))
                return loop.makeSucceededFuture(ReloadResult(unchanged: [], added: op == "add" ? [spec.text] : [], removed: []))
            })
    }

    private func post(_ uri: String, _ body: String, bearer: String?, reloadFails: Bool = false) throws -> (HTTPResponseStatus?, String) {
        let channel = EmbeddedChannel(handler: api(reloadFails: reloadFails), loop: loop)
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 7070)).wait()
        var h = HTTPHeaders()
        h.add(name: "Host", value: "127.0.0.1:7070")
        h.add(name: "Content-Type", value: "application/json")
        h.add(name: "Content-Length", value: "\(body.utf8.count)")
        if let bearer { h.add(name: "Authorization", value: "Bearer \(bearer)") }
        try channel.writeInbound(HTTPServerRequestPart.head(HTTPRequestHead(version: .http1_1, method: .POST, uri: uri, headers: h)))
        try channel.writeInbound(HTTPServerRequestPart.body(ByteBuffer(string: body)))
        try channel.writeInbound(HTTPServerRequestPart.end(nil))
        loop.run()
        var status: HTTPResponseStatus?
        var text = ""
        while let part = try channel.readOutbound(as: HTTPServerResponsePart.self) {
            switch part {
            case .head(let head): status = head.status
            case .body(.byteBuffer(let b)): text += String(buffer: b)
            default: break
            }
        }
        _ = try? channel.finish()
        return (status, text)
    }

    func testAValidForwardWithTheTokenIsAdded() throws {
        let (status, body) = try post("/v1/forwards/add", #"{"spec":"tcp:0.0.0.0:8080=acme/10.0.0.1:80"}"#, bearer: token)
        XCTAssertEqual(status, .ok)
        XCTAssertEqual(try JSONDecoder().decode(ReloadResult.self, from: Data(body.utf8)).added, ["tcp:0.0.0.0:8080=acme/10.0.0.1:80"])
        XCTAssertEqual(calls.map(\.0), ["add"])
    }

    func testRemoveIsPassedOn() throws {
        XCTAssertEqual(try post("/v1/forwards/remove", #"{"spec":"udp:acme/0.0.0.0:53=10.0.0.1:53"}"#, bearer: token).0, .ok)
        XCTAssertEqual(calls.map(\.0), ["remove"])
        XCTAssertEqual(calls.map(\.1), ["udp:acme/0.0.0.0:53=10.0.0.1:53"])
    }

    func testNothingReachesTheServerWithoutTheToken() throws {
        XCTAssertEqual(try post("/v1/forwards/add", #"{"spec":"tcp:0.0.0.0:8080=acme/10.0.0.1:80"}"#, bearer: nil).0, .unauthorized)
        XCTAssertEqual(try post("/v1/reload", "{}", bearer: "x" + token.dropFirst()).0, .unauthorized)
        XCTAssertTrue(calls.isEmpty)
    }

    func testBadBodiesAndBadForwardsAreAnswered400() throws {
        for body in ["", "[]", #"{"spec":5}"#, #"{"spec":"tcp:0.0.0.0:8080"}"#, #"{"spec":"tcp:0.0.0.0:99999=acme/10.0.0.1:80"}"#] {
            XCTAssertEqual(try post("/v1/forwards/add", body, bearer: token).0, .badRequest, body)
        }
        XCTAssertEqual(try post("/v1/forwards/frobnicate", #"{"spec":"tcp:0.0.0.0:8080=acme/10.0.0.1:80"}"#, bearer: token).0, .notFound)
        XCTAssertTrue(calls.isEmpty)
    }

    func testARefusedReloadSaysWhy() throws {
        let (status, body) = try post("/v1/reload", "{}", bearer: token, reloadFails: true)
        XCTAssertEqual(status, .unprocessableEntity)
        XCTAssertTrue(body.contains("reload refused: invalid forward"), body)
    }
}
