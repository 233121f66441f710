import Logging
import NIOCore
import NIOPosix
import PosternCore
import PosternMediator
import PosternSOCKS
import XCTest

@preconcurrency @testable import PosternServer

/// A real server with two event loops and real mediators over loopback: sessions spread over the
/// loops, a `tcp:` forward's users are accepted onto their mediator's loop (or reset by the guard
/// in `TCPForwardToMediator`, which would count a refusal), every forward shape, SOCKS5 listeners
/// and the UDP channels run on their mediator's loop, and what still needs the control loop (a SOCKS5
/// listener whose accounts may choose their mediator) brings the mediators there.
final class ServerThreadsTests: XCTestCase {
    private let secret = Array("a shared secret of enough bytes".utf8)
    private var clients: MultiThreadedEventLoopGroup!
    private var echo: Channel!
    private var mediators: [MediatorService] = []
    private var runs: [Task<Void, Never>] = []
    private var server: ServerService!

    override func setUp() async throws {
        clients = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        echo = try await ServerBootstrap(group: clients)
            .childChannelInitializer { $0.pipeline.addHandler(Echo()) }
            .bind(host: "127.0.0.1", port: 0).get()
    }

    override func tearDown() async throws {
        for m in mediators { m.stop() }
        for r in runs { await r.value }
        server?.stop()
        if let server { try? await server.run() }
        try? await echo?.close()
        try? await clients?.shutdownGracefully()
    }

    private func startServer(
        threads: Int, forwards: [String], maxUnauthenticated: Int? = nil, socks: [String] = [], socksUsers: String? = nil
    ) async throws {
        var configuration = ServerConfiguration(
            listen: ListenAddress(.v4(0x7f00_0001), 0), secrets: SecretBook(shared: secret), admin: nil,
            forwards: try forwards.map { try ForwardSpec(parsing: $0) }, softwareVersion: "test")
        configuration.threads = threads
        configuration.socks = try socks.map { try SOCKSListenerSpec(parsing: $0) }
        if let socksUsers { configuration.socksSettings = SOCKSSettings(users: try SOCKSUsers(parsing: socksUsers, source: "test")) }
        if let maxUnauthenticated {
            configuration.maxUnauthenticated = maxUnauthenticated
            configuration.maxUnauthenticatedPerAddress = maxUnauthenticated
        }
        server = ServerService(configuration: configuration, logger: Logger(label: "server"))
        try await server.start()
    }

    private func startMediator(_ name: String) throws {
        let port = try XCTUnwrap(server.boundService?.port)
        let configuration = MediatorConfiguration(
            serverHost: "127.0.0.1", serverPort: port, name: name, secret: secret,
            policy: Policy(allow: [try AllowRule(parsing: "127.0.0.1")], listenEnabled: true, redirectEnabled: true),
            softwareVersion: "test")
        let mediator = MediatorService(configuration: configuration, logger: Logger(label: name))
        mediators.append(mediator)
        runs.append(Task { try? await mediator.run() })
    }

    /// The loop index of each connected mediator, read on the control loop.
    private func loops() async throws -> [String: Int] {
        try await server.eventLoop.submit { [server] in
            var found: [String: Int] = [:]
            for link in server!.registry.openLinks {
                found[link.name] = server!.loops.firstIndex { $0 === link.eventLoop }
            }
            return found
        }.get()
    }

    /// Starts m1, then m2 once m1's session is up (so the round robin deals them one loop each),
    /// and returns where each session runs.
    @discardableResult
    private func startM1ThenM2() async throws -> [String: Int] {
        try startMediator("m1")
        try await waitFor("m1") { try await loops()["m1"] != nil }
        try startMediator("m2")
        try await waitFor("m2") { try await loops()["m2"] != nil }
        return try await loops()
    }

    private func waitFor(_ what: String, _ condition: () async throws -> Bool) async throws {
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline {
            if try await condition() { return }
            try await Task.sleep(nanoseconds: 20_000_000)
        }
        XCTFail("timed out waiting for \(what)")
        throw CancellationError()
    }

    /// What the mediator's forward counted: (connections, refusals), and where it listens.
    private func forward(_ mediator: String) async throws -> (total: UInt64, refusals: UInt64, address: SocketAddress) {
        try await server.eventLoop.submit { [server] in
            let f = server!.forwards.compactMap { $0 as? TCPForwardToMediator }.first { $0.spec.mediator == mediator }!
            return (f.counters.connectionsTotal, f.counters.refusals, f.boundAddress!)
        }.get()
    }

    /// Sends a line through the mediator's forward and reads it back.
    private func roundTrip(_ mediator: String, _ text: String) async throws -> String {
        try await roundTrip(to: forward(mediator).address, text)
    }

    private var targets: String { "127.0.0.1:\(echo.localAddress!.port!)" }

    func testSessionsSpreadAndForwardsAcceptOntoTheirMediatorsLoop() async throws {
        try await startServer(threads: 2, forwards: ["tcp:127.0.0.1:0=m1/\(targets)", "tcp:127.0.0.1:0=m2/\(targets)"])
        XCTAssertEqual(server.loops.count, 2)
        XCTAssertTrue(server.spreading)
        let placed = try await startM1ThenM2()
        XCTAssertNotEqual(placed["m1"], placed["m2"], "two sessions, two loops: \(placed)")
        for name in ["m1", "m2"] {
            for i in 0..<5 {
                let text = "\(name) line \(i)\n"
                let answer = try await roundTrip(name, text)
                XCTAssertEqual(answer, text)
            }
            // The guard resets a connection accepted on another loop than its mediator's session.
            let counted = try await forward(name)
            XCTAssertEqual(counted.refusals, 0, "\(name) on loop \(placed[name]!)")
            XCTAssertEqual(counted.total, 5)
        }
        // The status gathers each session's figures from its own loop.
        let status = try await server.eventLoop.flatSubmit { [server] in server!.statusLater() }.get()
        XCTAssertEqual(status.mediators.filter(\.connected).count, 2)
        XCTAssertTrue(status.mediators.allSatisfy { $0.bytesIn > 0 && $0.bytesOut > 0 }, "\(status.mediators)")
        XCTAssertEqual(status.forwards.map(\.connectionsTotal), [5, 5])
        // The UDP channels come up too: the kernel hands each session's datagrams to the UDP socket of
        // its loop (the session id names it), so none is stray.
        try await waitFor("both UDP channels up") {
            let s = try await server.eventLoop.flatSubmit { [server] in server!.statusLater() }.get()
            return s.mediators.filter { $0.datagramPath == "udp" && $0.udpReceived > 0 }.count == 2
        }
        // Not even a mediator's first datagram: the session registers with its loop's socket on its
        // loop before its WELCOME leaves. Wrong steering strays every datagram of a session.
        let stray = try await server.eventLoop.submit { [server] in server!.strayDatagrams }.get()
        XCTAssertEqual(stray, 0, "UDP channel datagrams reached their session's socket")
    }

    func testOneThreadKeepsEverythingOnOneLoop() async throws {
        try await startServer(threads: 1, forwards: ["tcp:127.0.0.1:0=m1/\(targets)"])
        XCTAssertFalse(server.spreading)
        try startMediator("m1")
        try startMediator("m2")
        try await waitFor("both") { try await loops().count == 2 }
        let placed = try await loops()
        XCTAssertEqual(Set(placed.values), [0])
        let answer = try await roundTrip("m1", "hello\n")
        XCTAssertEqual(answer, "hello\n")
    }

    func testAForwardThatNeedsTheControlLoopBringsItsMediatorThere() async throws {
        // Accounts that may choose their mediator: a SOCKS5 listener added now cannot follow one session.
        try await startServer(
            threads: 2, forwards: ["tcp:127.0.0.2:0=m1/\(targets)", "tcp:127.0.0.3:0=m2/\(targets)"], socksUsers: "alice secret *")
        XCTAssertTrue(server.spreading)
        let placed = try await startM1ThenM2()
        let away = try XCTUnwrap(placed.first { $0.value != 0 }?.key)
        // Its accounts may choose any mediator: every session must come to the control loop.
        let added = try await server.eventLoop.flatSubmit { [server] in
            server!.addSOCKS(try! SOCKSListenerSpec(parsing: "127.0.0.4:0=\(away)"))
        }.get()
        XCTAssertFalse(added.added.isEmpty, "\(added)")
        XCTAssertFalse(server.spreading)
        try await waitFor("\(away) back on loop 0") { try await loops()[away] == 0 }
        // Its tcp: forward follows it there and still relays.
        let answer = try await roundTrip(away, "after the move\n")
        XCTAssertEqual(answer, "after the move\n")
    }
}

extension ServerThreadsTests {
    /// A flood of connections that never say hello, dealt over both loops: the control loop's
    /// admission still bounds them (those evicted before their session reached the control loop
    /// included), and a real mediator gets in past them.
    func testSilentConnectionsSpreadOverLoopsStayBounded() async throws {
        try await startServer(threads: 2, forwards: [], maxUnauthenticated: 4)
        let address = try XCTUnwrap(server.boundService)
        var silent: [Channel] = []
        for _ in 0..<24 {
            silent.append(try await ClientBootstrap(group: clients).connect(to: address).get())
        }
        try await waitFor("all but 4 closed by the server") { silent.filter(\.isActive).count <= 4 }
        try startMediator("m1")
        try await waitFor("m1 past the flood") { try await loops()["m1"] != nil }
        XCTAssertLessThanOrEqual(silent.filter(\.isActive).count, 4)
        for c in silent { try? await c.close() }
    }
}

private final class Echo: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        context.writeAndFlush(data, promise: nil)
    }
}

private final class Collect: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    private var text = ""
    private let expected: Int
    private let done: EventLoopPromise<String>

    init(expected: Int, done: EventLoopPromise<String>) {
        self.expected = expected
        self.done = done
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = unwrapInboundIn(data)
        text += buffer.readString(length: buffer.readableBytes) ?? ""
        if text.utf8.count >= expected { done.succeed(text) }
    }

    func channelInactive(context: ChannelHandlerContext) {
        done.fail(ChannelError.eof)
    }
}

extension ServerThreadsTests {
    /// Every forward shape runs on its mediator's loop, so nothing keeps the sessions on the control
    /// loop: with a `udp:` forward to each mediator, a `udp:NAME/…` and a `tcp:NAME/…` forward from
    /// each, the two sessions stay on two loops, and every forward carries its traffic with no
    /// refusal (a datagram read on another loop than its mediator's session would be refused; and the
    /// flows' methods assert their loop in this debug build).
    func testEveryForwardShapeRunsOnItsMediatorsLoop() async throws {
        let udpEcho = try await DatagramBootstrap(group: clients)
            .channelInitializer { $0.pipeline.addHandler(DatagramEcho()) }
            .bind(host: "127.0.0.1", port: 0).get()
        defer { udpEcho.close(promise: nil) }
        let udpTarget = "127.0.0.1:\(udpEcho.localAddress!.port!)"
        var forwards: [String] = []
        var mediatorSide: [String: (tcp: Int, udp: Int)] = [:]
        for name in ["m1", "m2"] {
            let ports = (tcp: try Self.freePort(udp: false), udp: try Self.freePort(udp: true))
            mediatorSide[name] = ports
            forwards += [
                "udp:127.0.0.1:0=\(name)/\(udpTarget)", "tcp:\(name)/127.0.0.1:\(ports.tcp)=\(targets)",
                "udp:\(name)/127.0.0.1:\(ports.udp)=\(udpTarget)",
            ]
        }
        try await startServer(threads: 2, forwards: forwards)
        XCTAssertTrue(server.spreading, "no forward keeps the sessions on the control loop")
        let placed = try await startM1ThenM2()
        XCTAssertNotEqual(placed["m1"], placed["m2"], "two sessions, two loops: \(placed)")
        try await waitFor("the mediators' ports listening") {
            try await server.eventLoop.submit { [server] in server!.forwards.allSatisfy(\.counters.listening) }.get()
        }
        for name in ["m1", "m2"] {
            let toMediator = try await server.eventLoop.submit { [server] in
                server!.forwards.compactMap { $0 as? UDPForwardToMediator }.first { $0.spec.mediator == name }!.boundAddress!
            }.get()
            let mediatorPorts = try XCTUnwrap(mediatorSide[name])
            let udpBack = try SocketAddress(ipAddress: "127.0.0.1", port: mediatorPorts.udp)
            for (what, address) in [("udp: to \(name)", toMediator), ("udp:\(name)/", udpBack)] {
                let sent = (0..<20).map { "\(what) datagram \($0)" }
                let echoed = try await exchange(sent, with: address)
                XCTAssertEqual(Set(echoed), Set(sent), what)
            }
            let line = "\(name) through its own listener\n"
            let answer = try await roundTrip(to: try SocketAddress(ipAddress: "127.0.0.1", port: mediatorPorts.tcp), line)
            XCTAssertEqual(answer, line)
        }
        let after = try await loops()
        XCTAssertEqual(after, placed, "the sessions stayed where they were")
        XCTAssertTrue(server.spreading)
        let counted = try await server.eventLoop.submit { [server] in
            server!.forwards.map { ($0.spec.text, $0.counters.connectionsTotal, $0.counters.refusals, $0.counters.errors) }
        }.get()
        for (spec, total, refusals, errors) in counted {
            XCTAssertGreaterThan(total, 0, spec)
            XCTAssertEqual(refusals, 0, spec)
            XCTAssertEqual(errors, 0, spec)
        }
    }

    /// A port nobody listens on now (bound and closed at once).
    static func freePort(udp: Bool) throws -> Int {
        let group = MultiThreadedEventLoopGroup.singleton
        let channel: Channel =
            udp
            ? try DatagramBootstrap(group: group).bind(host: "127.0.0.1", port: 0).wait()
            : try ServerBootstrap(group: group).bind(host: "127.0.0.1", port: 0).wait()
        let port = channel.localAddress!.port!
        try channel.close().wait()
        return port
    }

    /// Sends `datagrams` to `address` from one socket (again while answers are missing: the first
    /// ones open the flow) and returns the distinct answers.
    private func exchange(_ datagrams: [String], with address: SocketAddress) async throws -> [String] {
        let answers = DatagramAnswers()
        let channel = try await DatagramBootstrap(group: clients)
            .channelInitializer { $0.pipeline.addHandler(answers) }
            .bind(host: "127.0.0.1", port: 0).get()
        defer { channel.close(promise: nil) }
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline {
            let have = Set(answers.all)
            let missing = datagrams.filter { !have.contains($0) }
            if missing.isEmpty { break }
            for text in missing {
                channel.write(AddressedEnvelope(remoteAddress: address, data: channel.allocator.buffer(string: text)), promise: nil)
            }
            channel.flush()
            try await Task.sleep(nanoseconds: 100_000_000)
        }
        return Array(Set(answers.all))
    }

    private func roundTrip(to address: SocketAddress, _ text: String) async throws -> String {
        let deadline = Date().addingTimeInterval(20)
        while true {
            do {
                let received = clients.next().makePromise(of: String.self)
                let channel = try await ClientBootstrap(group: clients)
                    .channelInitializer { $0.pipeline.addHandler(Collect(expected: text.utf8.count, done: received)) }
                    .connect(to: address).get()
                try await channel.writeAndFlush(channel.allocator.buffer(string: text)).get()
                let answer = try await received.futureResult.get()
                try? await channel.close()
                return answer
            } catch  where Date() < deadline {
                try await Task.sleep(nanoseconds: 100_000_000)
            }
        }
    }
}

private final class DatagramEcho: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>
    typealias OutboundOut = AddressedEnvelope<ByteBuffer>
    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        context.writeAndFlush(data, promise: nil)
    }
}

/// What a client socket received, read from the test's task.
private final class DatagramAnswers: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>
    private let lock = NSLock()
    private var received: [String] = []
    var all: [String] { lock.withLock { received } }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var envelope = unwrapInboundIn(data)
        let text = envelope.data.readString(length: envelope.data.readableBytes) ?? ""
        lock.withLock { received.append(text) }
    }
}

extension ServerThreadsTests {
    /// Garbage at the service port over UDP, spread over its per-loop sockets by the reuseport program:
    /// datagrams too short for the program's load or for a header, and headers naming no session, are
    /// counted as stray on whichever socket gets them; headers naming a real session with a forged seal
    /// reach that session's socket and are refused there. Nothing crashes, and both sessions keep
    /// their UDP channels and serve.
    func testGarbageAtTheSpreadUDPSocketsIsStrayAndHarmless() async throws {
        try await startServer(threads: 2, forwards: ["tcp:127.0.0.1:0=m1/\(targets)", "tcp:127.0.0.1:0=m2/\(targets)"])
        try await startM1ThenM2()
        try await waitFor("both UDP channels up") {
            let s = try await server.eventLoop.flatSubmit { [server] in server!.statusLater() }.get()
            return s.mediators.filter { $0.datagramPath == "udp" && $0.udpReceived > 0 }.count == 2
        }
        let sessions = try await server.eventLoop.submit { [server] in server!.registry.openLinks.compactMap { $0.info?.sessionID } }.get()
        XCTAssertEqual(sessions.count, 2)
        let port = try XCTUnwrap(server.boundDatagram)
        let sender = try await DatagramBootstrap(group: clients).bind(host: "127.0.0.1", port: 0).get()
        defer { sender.close(promise: nil) }
        var garbage: [[UInt8]] = []
        for n in 1..<20 { garbage.append((0..<n).map { _ in UInt8.random(in: 0...255) }) }  // no room for a header
        for i in 0..<40 {  // a well-formed header naming no session
            var d: [UInt8] = [1, 0, 0, 1]
            withUnsafeBytes(of: (UInt64(1 << 40) + UInt64(i)).bigEndian) { d += $0 }
            d += [UInt8](repeating: 0, count: 8) + (0..<40).map { _ in UInt8.random(in: 0...255) }
            garbage.append(d)
        }
        for id in sessions {
            for i in 0..<20 {  // a real session's id, sealed by nobody
                var d: [UInt8] = [1, 0, 0, 1]
                withUnsafeBytes(of: id.bigEndian) { d += $0 }
                withUnsafeBytes(of: UInt64(1_000_000 + i).bigEndian) { d += $0 }
                garbage.append(d + (0..<40).map { _ in UInt8.random(in: 0...255) })
            }
        }
        for d in garbage {
            sender.write(AddressedEnvelope(remoteAddress: port, data: sender.allocator.buffer(bytes: d)), promise: nil)
        }
        sender.flush()
        try await waitFor("59 stray datagrams counted") {
            try await server.eventLoop.submit { [server] in server!.strayDatagrams }.get() >= 59
        }
        let stray = try await server.eventLoop.submit { [server] in server!.strayDatagrams }.get()
        XCTAssertEqual(stray, 59, "the forged seals of real sessions are theirs to refuse, not stray")
        // What `ctl mediators` shows as "unrouted (server)" for every mediator, whatever its loop.
        let unrouted = try await server.eventLoop.submit { [server] in server!.registry.unroutedDatagrams() }.get()
        XCTAssertEqual(unrouted, 59)
        let status = try await server.eventLoop.flatSubmit { [server] in server!.statusLater() }.get()
        XCTAssertEqual(status.mediators.filter { $0.connected && $0.datagramPath == "udp" }.count, 2)
        for name in ["m1", "m2"] {
            let answer = try await roundTrip(name, "\(name) after the garbage\n")
            XCTAssertEqual(answer, "\(name) after the garbage\n")
        }
    }
}

extension ServerThreadsTests {
    /// A SOCKS5 listener whose clients reach its own mediator only (no accounts, or accounts without
    /// a choice) is steered to that mediator's loop like a forward: the sessions stay spread, and a
    /// CONNECT through each mediator's listener is relayed (on another loop it would find its mediator
    /// not connected there and be refused).
    func testSOCKSListenersFollowTheirMediatorsLoop() async throws {
        try await startServer(
            threads: 2, forwards: [], socks: ["127.0.0.6:0=m1", "127.0.0.7:0=m2"], socksUsers: "bob pass\ncarol word")
        XCTAssertTrue(server.spreading, "no listener's accounts may choose another mediator")
        let placed = try await startM1ThenM2()
        XCTAssertNotEqual(placed["m1"], placed["m2"], "two sessions, two loops: \(placed)")
        let listeners = try await server.eventLoop.submit { [server] in
            server!.socksListeners.map { ($0.spec.mediator, $0.boundAddress!) }
        }.get()
        let echoPort = echo.localAddress!.port!
        for (name, address) in listeners {
            for i in 0..<3 {
                let line = "\(name) via socks \(i)\n"
                let answer = try await socksRoundTrip(address, user: "bob", password: "pass", to: echoPort, line)
                XCTAssertEqual(answer, line)
            }
        }
        // One added at run time follows its mediator, connected already, to its loop.
        let away = try XCTUnwrap(placed.first { $0.value != 0 }?.key)
        let added = try await server.eventLoop.flatSubmit { [server] in
            server!.addSOCKS(try! SOCKSListenerSpec(parsing: "127.0.0.5:0=\(away)"))
        }.get()
        XCTAssertFalse(added.added.isEmpty, "\(added)")
        let third = try await server.eventLoop.submit { [server] in server!.socksListeners.last!.boundAddress! }.get()
        let answer = try await socksRoundTrip(third, user: "bob", password: "pass", to: echoPort, "added at run time\n")
        XCTAssertEqual(answer, "added at run time\n")
        let after = try await loops()
        XCTAssertEqual(after, placed)
        XCTAssertTrue(server.spreading)
        let totals = try await server.eventLoop.submit { [server] in server!.socksListeners.map(\.connectionsTotal) }.get()
        XCTAssertEqual(totals, [3, 3, 1])
    }

    /// A SOCKS5 CONNECT to 127.0.0.1:`port` (username/password), then `text` and its echo.
    private func socksRoundTrip(_ proxy: SocketAddress, user: String, password: String, to port: Int, _ text: String) async throws
        -> String
    {
        var request: [UInt8] = [5, 1, 2]  // greeting: username/password
        request += [1, UInt8(user.utf8.count)] + Array(user.utf8) + [UInt8(password.utf8.count)] + Array(password.utf8)
        request += [5, 1, 0, 1, 127, 0, 0, 1, UInt8(port >> 8), UInt8(port & 0xff)]
        // Method choice (2) + auth status (2) + CONNECT reply (10), then the echo.
        let expected = 2 + 2 + 10 + text.utf8.count
        let received = clients.next().makePromise(of: [UInt8].self)
        let channel = try await ClientBootstrap(group: clients)
            .channelInitializer { $0.pipeline.addHandler(CollectBytes(expected: expected, done: received)) }
            .connect(to: proxy).get()
        defer { channel.close(promise: nil) }
        try await channel.writeAndFlush(channel.allocator.buffer(bytes: request)).get()
        // The echo must not reach the proxy before its CONNECT was answered.
        try await Task.sleep(nanoseconds: 200_000_000)
        try await channel.writeAndFlush(channel.allocator.buffer(string: text)).get()
        let bytes = try await received.futureResult.get()
        XCTAssertEqual(Array(bytes.prefix(5)), [5, 2, 1, 0, 5])
        XCTAssertEqual(bytes[5], 0, "CONNECT succeeded")
        return String(decoding: bytes.dropFirst(14), as: UTF8.self)
    }
}

/// Collects `expected` bytes.
private final class CollectBytes: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    private var bytes: [UInt8] = []
    private let expected: Int
    private let done: EventLoopPromise<[UInt8]>

    init(expected: Int, done: EventLoopPromise<[UInt8]>) {
        self.expected = expected
        self.done = done
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = unwrapInboundIn(data)
        bytes += buffer.readBytes(length: buffer.readableBytes) ?? []
        if bytes.count >= expected { done.succeed(bytes) }
    }

    func channelInactive(context: ChannelHandlerContext) {
        done.fail(ChannelError.eof)
    }
}
