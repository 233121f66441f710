import Foundation
import Logging
import NIOCore
import NIOEmbedded
import NIOHTTP1
import PosternTunnel
import PosternWire
import XCTest

@testable import PosternServer

/// `/metrics`: the names and labels Prometheus sees, escaping of user-given label values (mediator
/// names, forward specs), the forward states, and who may scrape (the admin API needs the token;
/// the tokenless `--metrics` endpoint serves GET /metrics and nothing else).
final class ServerMetricsTests: XCTestCase {
    private func status(mediator: String = "acme", forward: String = "tcp:0.0.0.0:8080=acme/192.168.77.10:80") -> ServerStatus {
        ServerStatus(
            version: "9.9.9", startedAt: "2026-11-30T00:00:00Z", uptimeSeconds: 12.5,
            mediators: [
                .init(
                    name: mediator, connected: true, sessions: 3, from: "203.0.113.1:4000", connectedAt: nil, ports: 2, bytesIn: 1000,
                    bytesOut: 2000, datagramPath: "udp", udpSent: 5, udpReceived: 6, keepaliveRTTSeconds: 0.004,
                    udpKeepaliveRTTSeconds: 0.002),
                .init(
                    name: "gone", connected: false, sessions: 1, from: nil, connectedAt: nil, ports: 0, bytesIn: 0, bytesOut: 0,
                    datagramPath: "tcp", udpSent: 0, udpReceived: 0, keepaliveRTTSeconds: nil),
            ],
            forwards: [
                .init(
                    spec: forward, mediator: mediator, transport: "tcp", state: "listening", reason: nil, connectionsOpen: 1,
                    connectionsTotal: 7, bytesToMediator: 123_456_789_012, bytesFromMediator: 42, refusals: 1, policyDenials: 2, errors: 3)
            ],
            process: .init(residentBytes: 40 << 20, openFiles: 17))
    }

    private func lines(_ text: String) -> Set<String> { Set(text.split(separator: "\n").map(String.init)) }

    func testNamesLabelsAndValues() {
        let text = ServerMetrics.render(status())
        let l = lines(text)
        let forward = #"forward="tcp:0.0.0.0:8080=acme/192.168.77.10:80",mediator="acme""#
        for expected in [
            #"postern_build_info{version="9.9.9"} 1.0"#,
            "postern_uptime_seconds 12.5",
            "process_resident_memory_bytes 41943040.0",
            "process_open_fds 17.0",
            #"postern_mediator_connected{mediator="acme"} 1.0"#,
            #"postern_mediator_connected{mediator="gone"} 0.0"#,
            #"postern_mediator_sessions_total{mediator="acme"} 3"#,
            #"postern_mediator_reconnects_total{mediator="acme"} 2"#,
            #"postern_mediator_reconnects_total{mediator="gone"} 0"#,
            #"postern_mediator_ports_open{mediator="acme"} 2.0"#,
            #"postern_mediator_bytes_total{mediator="acme",direction="in"} 1000"#,
            #"postern_mediator_bytes_total{mediator="acme",direction="out"} 2000"#,
            #"postern_mediator_datagram_path{mediator="acme",path="udp"} 1.0"#,
            #"postern_mediator_datagram_path{mediator="acme",path="tcp"} 0.0"#,
            #"postern_mediator_udp_channel_datagrams_total{mediator="acme",what="sent"} 5"#,
            #"postern_mediator_keepalive_rtt_seconds{mediator="acme",channel="tcp"} 0.004"#,
            #"postern_mediator_keepalive_rtt_seconds{mediator="acme",channel="udp"} 0.002"#,
            "postern_forward_state{\(forward),state=\"listening\"} 1.0",
            "postern_forward_state{\(forward),state=\"waiting\"} 0.0",
            "postern_forward_connections_open{\(forward)} 1.0",
            "postern_forward_connections_total{\(forward)} 7",
            "postern_forward_bytes_total{\(forward),direction=\"to_mediator\"} 123456789012",
            "postern_forward_bytes_total{\(forward),direction=\"from_mediator\"} 42",
            "postern_forward_refusals_total{\(forward)} 1",
            "postern_forward_policy_denials_total{\(forward)} 2",
            "postern_forward_errors_total{\(forward)} 3",
            "# TYPE postern_forward_bytes_total counter",
            "# TYPE postern_forward_connections_open gauge",
        ] {
            XCTAssertTrue(l.contains(expected), "missing: \(expected)\n\(text)")
        }
        XCTAssertFalse(text.contains(#"keepalive_rtt_seconds{mediator="gone""#), "no round trip measured: no sample")
    }

    /// Every sample line of the exposition, whatever the names and values held.
    private func assertWellFormed(_ text: String, file: StaticString = #filePath, line: UInt = #line) {
        let labelValue = #""(?:[^"\\\n]|\\\\|\\"|\\n)*""#
        let sample = try! NSRegularExpression(
            pattern: #"^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[a-zA-Z_][a-zA-Z0-9_]*="# + labelValue + #"(,[a-zA-Z_][a-zA-Z0-9_]*="# + labelValue
                + #")*\})? [-+0-9.eE]+(Inf)?$"#)
        for l in text.split(separator: "\n").map(String.init) where !l.hasPrefix("#") {
            let range = NSRange(l.startIndex..., in: l)
            XCTAssertNotNil(sample.firstMatch(in: l, range: range), "not a valid sample line: \(l)", file: file, line: line)
        }
    }

    func testHostileLabelValuesAreEscaped() {
        let name = "evil\"} 1\npostern_fake{x=\"\\"
        let text = ServerMetrics.render(status(mediator: name, forward: "tcp:0.0.0.0:1=\(name)/10.0.0.1:1"))
        XCTAssertTrue(text.contains(#"postern_mediator_connected{mediator="evil\"} 1\npostern_fake{x=\"\\"} 1.0"#), text)
        XCTAssertFalse(lines(text).contains { $0.hasPrefix("postern_fake") }, "a name must not start a line of its own")
        assertWellFormed(text)
    }

    func testWholeExpositionIsWellFormed() {
        let metrics = ServerMetrics()
        metrics.handshakeTook(.milliseconds(30))
        metrics.connectTimer(forward: "tcp:0.0.0.0:8080=a\"b/1.2.3.4:5").recordNanoseconds(2_000_000)
        let text = metrics.text(status())
        assertWellFormed(text)
        XCTAssertTrue(text.contains("# TYPE postern_handshake_seconds histogram"), text)
        XCTAssertTrue(lines(text).contains("postern_handshake_seconds_count 1"), text)
        XCTAssertTrue(lines(text).contains(#"postern_forward_connect_seconds_count{forward="tcp:0.0.0.0:8080=a\"b/1.2.3.4:5"} 1"#), text)
    }

    func testForwardStates() {
        typealias F = ServerStatus.Forward
        XCTAssertEqual(F.state(listening: true, failure: nil, mediatorConnected: true, listensOnServer: true).0, "listening")
        let waiting = F.state(listening: true, failure: nil, mediatorConnected: false, listensOnServer: true)
        XCTAssertEqual(waiting.0, "waiting")
        XCTAssertEqual(waiting.1, "mediator not connected")
        XCTAssertEqual(F.state(listening: false, failure: nil, mediatorConnected: true, listensOnServer: false).0, "waiting")
        let failed = F.state(
            listening: false, failure: "mediator 'a' cannot listen: addressInUse", mediatorConnected: true, listensOnServer: false)
        XCTAssertEqual(failed.0, "failed")
        XCTAssertEqual(failed.1, "mediator 'a' cannot listen: addressInUse")
        XCTAssertEqual(F.state(listening: true, failure: "old", mediatorConnected: true, listensOnServer: false).0, "listening")
    }

    func testFailuresAreClassified() {
        let c = ForwardCounters()
        c.failed(OperationError(code: .deniedByPolicy, message: "not allowed"))
        c.failed(OperationError(code: .refused, message: ""))
        c.failed(ChannelError.ioOnClosedChannel)
        c.refused()
        XCTAssertEqual(c.policyDenials, 1)
        XCTAssertEqual(c.errors, 2)
        XCTAssertEqual(c.refusals, 1)
        c.datagramBytesToMediator = 10
        c.openFlows = { 3 }
        XCTAssertEqual(c.bytesToMediator, 10)
        XCTAssertEqual(c.connectionsOpen, 3)
    }

    // MARK: - Who may scrape

    private let token = "0123456789abcdef0123456789abcdef"

    private func request(_ handler: ChannelHandler, _ method: HTTPMethod, _ uri: String, bearer: String?) throws -> (
        HTTPResponseStatus?, String
    ) {
        let channel = EmbeddedChannel(loop: EmbeddedEventLoop())
        try channel.pipeline.syncOperations.addHandler(handler)
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 7070)).wait()
        var h = HTTPHeaders()
        h.add(name: "Host", value: "127.0.0.1:7070")
        if let bearer { h.add(name: "Authorization", value: "Bearer \(bearer)") }
        try channel.writeInbound(HTTPServerRequestPart.head(HTTPRequestHead(version: .http1_1, method: method, uri: uri, headers: h)))
        try channel.writeInbound(HTTPServerRequestPart.end(nil))
        var status: HTTPResponseStatus?
        var body = ""
        while let part = try channel.readOutbound(as: HTTPServerResponsePart.self) {
            switch part {
            case .head(let head): status = head.status
            case .body(.byteBuffer(let b)): body += String(buffer: b)
            default: break
            }
        }
        _ = try? channel.finish()
        return (status, body)
    }

    private func adminAPI() -> AdminAPI {
        let registry = MediatorRegistry(events: EventLog(clock: { Date(timeIntervalSince1970: 0) }), logger: Logger(label: "test"))
        let access = AdminAccess(token: AdminToken(Array(token.utf8)), hosts: AdminHostRule(port: 7070, addresses: [.v4(0x7f00_0001)]))
        let status = status()
        return AdminAPI(
            registry: registry, access: access, limits: AdminLimits(), logger: Logger(label: "test"), status: { status },
            metrics: ServerMetrics())
    }

    func testAdminMetricsNeedTheToken() throws {
        XCTAssertEqual(try request(adminAPI(), .GET, "/metrics", bearer: nil).0, .unauthorized)
        XCTAssertEqual(try request(adminAPI(), .GET, "/metrics", bearer: "f" + token.dropFirst()).0, .unauthorized)
        let (ok, body) = try request(adminAPI(), .GET, "/metrics", bearer: token)
        XCTAssertEqual(ok, .ok)
        XCTAssertTrue(body.contains(#"postern_mediator_connected{mediator="acme"} 1.0"#), body)
        let (statusOK, json) = try request(adminAPI(), .GET, "/v1/status", bearer: token)
        XCTAssertEqual(statusOK, .ok)
        let decoded = try JSONDecoder().decode(ServerStatus.self, from: Data(json.utf8))
        XCTAssertEqual(decoded.forwards.first?.bytesToMediator, 123_456_789_012)
        XCTAssertEqual(decoded.mediators.map(\.name), ["acme", "gone"])
    }

    func testTokenlessEndpointServesOnlyMetrics() throws {
        let endpoint = { MetricsEndpoint(idleTimeout: .seconds(5)) { "postern_uptime_seconds 1\n" } }
        let (ok, body) = try request(endpoint(), .GET, "/metrics", bearer: nil)
        XCTAssertEqual(ok, .ok)
        XCTAssertEqual(body, "postern_uptime_seconds 1\n")
        XCTAssertEqual(try request(endpoint(), .GET, "/v1/status", bearer: nil).0, .notFound)
        XCTAssertEqual(try request(endpoint(), .GET, "/v1/mediators", bearer: token).0, .notFound)
        XCTAssertEqual(try request(endpoint(), .POST, "/metrics", bearer: nil).0, .methodNotAllowed)
    }

    func testTokenlessEndpointClosesIdleConnections() throws {
        let loop = EmbeddedEventLoop()
        let channel = EmbeddedChannel(loop: loop)
        try channel.pipeline.syncOperations.addHandler(MetricsEndpoint(idleTimeout: .seconds(5)) { "" })
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 9100)).wait()
        loop.advanceTime(by: .seconds(4))
        XCTAssertTrue(channel.isActive)
        loop.advanceTime(by: .seconds(1))
        XCTAssertFalse(channel.isActive)
    }
}
