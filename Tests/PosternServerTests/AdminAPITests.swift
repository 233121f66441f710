import Foundation
import Logging
import NIOCore
import NIOEmbedded
import NIOHTTP1
import PosternWire
import XCTest

@testable import PosternServer

/// The admin API's handler on an EmbeddedChannel: refusals are answered once and close, a body
/// past the limit answers 413 once, idle connections time out, and an event stream whose client
/// stops reading is dropped.
final class AdminAPITests: XCTestCase {
    private let token = "0123456789abcdef0123456789abcdef"
    private var registry: MediatorRegistry!
    private var channel: EmbeddedChannel!
    private var loop: EmbeddedEventLoop!

    private func start(limits: AdminLimits = AdminLimits(), front: [any ChannelHandler] = []) throws {
        loop = EmbeddedEventLoop()
        registry = MediatorRegistry(events: EventLog(clock: { Date(timeIntervalSince1970: 0) }), logger: Logger(label: "test"))
        let access = AdminAccess(token: AdminToken(Array(token.utf8)), hosts: AdminHostRule(port: 7070, addresses: [.v4(0x7f00_0001)]))
        channel = EmbeddedChannel(loop: loop)
        for h in front { try channel.pipeline.syncOperations.addHandler(h) }
        try channel.pipeline.syncOperations.addHandler(
            AdminAPI(registry: registry, access: access, limits: limits, logger: Logger(label: "test")))
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 7070)).wait()
    }

    override func tearDown() {
        _ = try? channel?.finish()
    }

    private func head(
        _ method: HTTPMethod, _ uri: String, bearer: String?, host: String = "127.0.0.1:7070", type: String? = nil, length: Int? = nil
    )
        -> HTTPRequestHead
    {
        var h = HTTPHeaders()
        h.add(name: "Host", value: host)
        if let bearer { h.add(name: "Authorization", value: "Bearer \(bearer)") }
        if let type { h.add(name: "Content-Type", value: type) }
        if let length { h.add(name: "Content-Length", value: "\(length)") }
        return HTTPRequestHead(version: .http1_1, method: method, uri: uri, headers: h)
    }

    private func send(_ parts: HTTPServerRequestPart...) throws {
        for p in parts { try channel.writeInbound(p) }
    }

    /// The response heads written so far.
    private func statuses() throws -> [HTTPResponseStatus] {
        var out: [HTTPResponseStatus] = []
        while let part = try channel.readOutbound(as: HTTPServerResponsePart.self) {
            if case .head(let h) = part { out.append(h.status) }
        }
        return out
    }

    private func bytes(_ n: Int) -> ByteBuffer { ByteBuffer(repeating: UInt8(ascii: "x"), count: n) }

    func testAuthorizedRequestIsAnsweredAndTheConnectionStays() throws {
        try start()
        try send(.head(head(.GET, "/v1/mediators", bearer: token)), .end(nil))
        XCTAssertEqual(try statuses(), [.ok])
        XCTAssertTrue(channel.isActive)
        try send(.head(head(.GET, "/v1/counters", bearer: token)), .end(nil))
        XCTAssertEqual(try statuses(), [.ok])
    }

    func testRequestWithoutTokenIsRefusedOnceAndClosed() throws {
        try start()
        try send(.head(head(.GET, "/v1/mediators", bearer: nil)), .end(nil))
        try send(.head(head(.GET, "/v1/mediators", bearer: token)), .end(nil))
        XCTAssertEqual(try statuses(), [.unauthorized], "nothing after the refusal is served")
        loop.advanceTime(by: .seconds(2))
        XCTAssertFalse(channel.isActive)
    }

    func testForeignHostIsRefused() throws {
        try start()
        try send(.head(head(.GET, "/v1/mediators", bearer: token, host: "rebound.example:7070")), .end(nil))
        XCTAssertEqual(try statuses(), [.forbidden])
    }

    func testPlainTextPostIsRefused() throws {
        try start()
        let body = "{\"transport\":\"tcp\",\"port\":0}"
        try send(
            .head(head(.POST, "/v1/mediators/acme/open", bearer: token, type: "text/plain", length: body.utf8.count)),
            .body(ByteBuffer(string: body)), .end(nil))
        XCTAssertEqual(try statuses(), [.unsupportedMediaType])
    }

    func testOversizedBodyAnswers413OnceAndCloses() throws {
        try start()
        try send(.head(head(.POST, "/v1/mediators/acme/open", bearer: token, type: "application/json")))
        for _ in 0..<10 { try send(.body(bytes(16 * 1024))) }
        try send(.end(nil))
        XCTAssertEqual(try statuses(), [.payloadTooLarge])
        loop.advanceTime(by: .seconds(2))
        XCTAssertFalse(channel.isActive)
    }

    func testDeclaredOversizedBodyIsRefusedAtOnce() throws {
        try start()
        try send(.head(head(.POST, "/v1/mediators/acme/open", bearer: token, type: "application/json", length: 10_000_000)))
        XCTAssertEqual(try statuses(), [.payloadTooLarge])
    }

    func testIdleConnectionTimesOut() throws {
        var limits = AdminLimits()
        limits.idleTimeout = .seconds(30)
        try start(limits: limits)
        loop.advanceTime(by: .seconds(29))
        XCTAssertTrue(channel.isActive)
        loop.advanceTime(by: .seconds(1))
        XCTAssertFalse(channel.isActive)
    }

    func testTricklingRequestTimesOut() throws {
        try start()
        try send(.head(head(.POST, "/v1/mediators/acme/open", bearer: token, type: "application/json")))
        for _ in 0..<29 {
            loop.advanceTime(by: .seconds(1))
            try send(.body(bytes(1)))
        }
        XCTAssertTrue(channel.isActive)
        loop.advanceTime(by: .seconds(1))
        XCTAssertFalse(channel.isActive, "a request must be complete within the idle timeout")
    }

    func testTimerRestartsAfterEachAnswer() throws {
        try start()
        loop.advanceTime(by: .seconds(20))
        try send(.head(head(.GET, "/v1/mediators", bearer: token)), .end(nil))
        XCTAssertEqual(try statuses(), [.ok])
        loop.advanceTime(by: .seconds(20))
        XCTAssertTrue(channel.isActive)
        loop.advanceTime(by: .seconds(10))
        XCTAssertFalse(channel.isActive)
    }

    func testEventStreamIsNotTimedOut() throws {
        try start()
        try send(.head(head(.GET, "/v1/events", bearer: token)), .end(nil))
        XCTAssertEqual(try statuses(), [.ok])
        loop.advanceTime(by: .seconds(120))
        XCTAssertTrue(channel.isActive)
        registry.events.post(ServerEvent(mediator: "acme", kind: "test", detail: "still here"))
        guard case .body(.byteBuffer(let b))? = try channel.readOutbound(as: HTTPServerResponsePart.self) else {
            return XCTFail("no event line")
        }
        XCTAssertTrue(String(buffer: b).contains("still here"))
    }

    /// Holds every write, like a socket whose reader stopped: no write completes.
    final class StalledSocket: ChannelOutboundHandler {
        typealias OutboundIn = Any
        var held: [EventLoopPromise<Void>?] = []
        func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
            held.append(promise)
        }
        func flush(context: ChannelHandlerContext) {}
        func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
            for p in held { p?.fail(ChannelError.ioOnClosedChannel) }
            held = []
            context.close(mode: mode, promise: promise)
        }
    }

    func testEventStreamOfAStalledClientIsDropped() throws {
        var limits = AdminLimits()
        limits.maxEventBacklog = 64 * 1024
        let stalled = StalledSocket()
        try start(limits: limits, front: [stalled])
        try send(.head(head(.GET, "/v1/events", bearer: token)), .end(nil))
        let detail = String(repeating: "d", count: 200)
        var posted = 0
        while channel.isActive && posted < 10_000 {
            registry.events.post(ServerEvent(mediator: "acme", kind: "datagram", port: 1, detail: detail))
            posted += 1
        }
        XCTAssertFalse(channel.isActive, "the stream was not dropped after \(posted) events")
        XCTAssertLessThan(posted, 400, "dropped only after \(posted) events of about 270 bytes")
        // Later events are not written anywhere.
        registry.events.post(ServerEvent(mediator: "acme", kind: "datagram", port: 1, detail: detail))
        XCTAssertEqual(stalled.held.count, 0)
    }

    func testEventStreamOfAReadingClientStays() throws {
        var limits = AdminLimits()
        limits.maxEventBacklog = 64 * 1024
        try start(limits: limits)
        try send(.head(head(.GET, "/v1/events", bearer: token)), .end(nil))
        for _ in 0..<2000 {
            registry.events.post(ServerEvent(mediator: "acme", kind: "datagram", port: 1, detail: String(repeating: "d", count: 200)))
            while try channel.readOutbound(as: HTTPServerResponsePart.self) != nil {}
        }
        XCTAssertTrue(channel.isActive)
    }

    func testConnectionCap() {
        let c = AdminConnections(limit: 2)
        XCTAssertEqual(c.admit(), .admitted)
        XCTAssertEqual(c.admit(), .admitted)
        XCTAssertEqual(c.admit(), .refused(first: true))
        XCTAssertEqual(c.admit(), .refused(first: false))
        c.release()
        XCTAssertEqual(c.admit(), .admitted)
        XCTAssertEqual(c.admit(), .refused(first: true))
    }
}
