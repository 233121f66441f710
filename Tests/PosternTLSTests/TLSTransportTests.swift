import Foundation
import NIOCore
import NIOPosix
import NIOSSL
import PosternCore
import PosternTunnel
import XCTest

@testable import PosternTLS

/// The TLS transport over real loopback sockets: a generated server identity, pinning, trust on first
/// use, and the sentences its failures produce.
final class TLSTransportTests: XCTestCase {
    private var directory = ""
    private let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)

    override func setUpWithError() throws {
        directory = NSTemporaryDirectory() + "postern-tls-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(atPath: directory)
        try group.syncShutdownGracefully()
    }

    private func mode(_ path: String) throws -> Int {
        (try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int) ?? -1
    }

    // MARK: - Identity

    func testIdentityIsCreatedOnceWithAPrivateKeyFileAndKeptAcrossStarts() throws {
        let state = directory + "/state"
        let (first, created) = try ServerIdentity.loadOrCreate(directory: state, now: Date())
        XCTAssertTrue(created)
        XCTAssertEqual(try mode(state + "/server.key"), 0o600)
        XCTAssertEqual(try mode(state), 0o700)
        let (second, createdAgain) = try ServerIdentity.loadOrCreate(directory: state, now: Date())
        XCTAssertFalse(createdAgain)
        XCTAssertEqual(first.fingerprint, second.fingerprint, "a restart must keep the key mediators pinned")
        XCTAssertEqual(try ServerIdentity.fingerprint(of: second.certificateChain[0]), second.fingerprint)
        // Another directory, another key.
        let (other, _) = try ServerIdentity.loadOrCreate(directory: directory + "/other", now: Date())
        XCTAssertNotEqual(other.fingerprint, first.fingerprint)
    }

    func testKeyReadableByOthersIsRefused() throws {
        let state = directory + "/state"
        _ = try ServerIdentity.loadOrCreate(directory: state, now: Date())
        chmod(state + "/server.key", 0o644)
        XCTAssertThrowsError(try ServerIdentity.loadOrCreate(directory: state, now: Date())) { error in
            XCTAssertTrue("\(error)".contains("accessible to other users"), "\(error)")
        }
    }

    func testKeyOfAnotherCertificateIsRefused() throws {
        _ = try ServerIdentity.loadOrCreate(directory: directory + "/a", now: Date())
        _ = try ServerIdentity.loadOrCreate(directory: directory + "/b", now: Date())
        XCTAssertThrowsError(
            try ServerIdentity.load(certificateFile: directory + "/a/server.crt", keyFile: directory + "/b/server.key")
        ) { error in
            XCTAssertTrue("\(error)".contains("does not belong to the certificate"), "\(error)")
        }
    }

    func testMissingOrGarbageCertificateGivesASentence() throws {
        _ = try ServerIdentity.loadOrCreate(directory: directory + "/a", now: Date())
        XCTAssertTrue(FileManager.default.createFile(atPath: directory + "/garbage.crt", contents: Data("not a certificate".utf8)))
        XCTAssertThrowsError(
            try ServerIdentity.load(certificateFile: directory + "/garbage.crt", keyFile: directory + "/a/server.key")
        ) { error in
            XCTAssertTrue("\(error)".contains("cannot read the TLS certificate"), "\(error)")
        }
    }

    func testCertificateNamesAreTheCommonNameAndTheDNSAlternativeNames() throws {
        let (identity, _) = try ServerIdentity.loadOrCreate(directory: directory + "/s", now: Date())
        XCTAssertEqual(CertificateNames.of(identity.certificateChain[0]), ["postern server", "postern-server"])
    }

    // MARK: - Known servers file

    func testKnownServersFileRecordsAndReloads() throws {
        let path = directory + "/known"
        let file = try KnownServersFile(path: path)
        let f = KeyFingerprint(subjectPublicKeyInfo: [1, 2, 3])
        XCTAssertNil(file.fingerprint(for: "h:1"))
        try file.record(f, for: "h:1")
        XCTAssertEqual(try mode(path), 0o600)
        XCTAssertEqual(try KnownServersFile(path: path).fingerprint(for: "h:1"), f)
        try "h:1 nonsense\n".write(toFile: path, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try KnownServersFile(path: path))
    }

    // MARK: - Handshakes over loopback

    /// Records what reaches the top of a pipeline.
    final class Outcome: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = ByteBuffer
        let handshake: EventLoopPromise<Void>
        /// What the transport told the session it is ready with.
        private(set) var ready: [TransportFacts] = []
        init(_ promise: EventLoopPromise<Void>) { handshake = promise }
        func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
            if let event = event as? TransportReadyEvent { ready.append(event.facts) }
            if "\(event)".contains("handshakeCompleted") { handshake.succeed(()) }
            context.fireUserInboundEventTriggered(event)
        }
        func errorCaught(context: ChannelHandlerContext, error: Error) {
            handshake.fail(error)
        }
        func channelInactive(context: ChannelHandlerContext) {
            handshake.fail(ChannelError.ioOnClosedChannel)
        }
    }

    /// The server ends' connections, in the order they were accepted (touched on the group's one loop).
    final class Accepted: @unchecked Sendable {
        var connections: [TransportConnection] = []
        /// Application bytes the server ends decrypted, all connections together.
        var received: [UInt8] = []
    }

    /// Keeps what reaches the top of a server pipeline.
    final class Received: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = ByteBuffer
        let accepted: Accepted
        init(_ accepted: Accepted) { self.accepted = accepted }
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            accepted.received += unwrapInboundIn(data).readableBytesView
        }
    }

    private func serve(_ transport: ServerTransport, port: Int = 0, accepted: Accepted = Accepted()) throws -> Channel {
        try ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                do {
                    let connection = try transport.serverConnection()
                    accepted.connections.append(connection)
                    return channel.pipeline.addHandlers(connection.handlers + [Received(accepted)])
                } catch {
                    return channel.eventLoop.makeFailedFuture(error)
                }
            }
            .bind(host: "127.0.0.1", port: port).wait()
    }

    /// Dials `server` and waits for the handshake; returns the connection or throws what failed.
    private func dial(
        _ transport: ClientTransport, _ server: Channel, send: String? = nil, keepOpen: Bool = false
    ) throws -> (TransportConnection, Channel) {
        try dialRecording(transport, server, send: send, keepOpen: keepOpen).0
    }

    /// `dial`, and the handler at the top of the pipeline (what reached it). The channel is closed on
    /// return unless `keepOpen`: a test that still reads its pipeline must close it itself, or the
    /// close races the read (the handlers are gone once it completes).
    private func dialRecording(
        _ transport: ClientTransport, _ server: Channel, send: String? = nil, keepOpen: Bool = false
    ) throws -> (
        (TransportConnection, Channel), Outcome
    ) {
        struct TimedOut: Error {}
        let port = server.localAddress!.port!
        let promise = group.next().makePromise(of: Void.self)
        promise.futureResult.eventLoop.scheduleTask(in: .seconds(5)) { promise.fail(TimedOut()) }
        let connection = try transport.clientConnection(serverHost: "127.0.0.1", serverPort: port)
        let outcome = Outcome(promise)
        let channel = try ClientBootstrap(group: group)
            .channelInitializer { $0.pipeline.addHandlers(connection.handlers + [outcome]) }
            .connect(host: "127.0.0.1", port: port).wait()
        defer { if !keepOpen { _ = channel.close() } }
        if let send { channel.writeAndFlush(ByteBuffer(string: send), promise: nil) }
        try promise.futureResult.wait()
        return ((connection, channel), outcome)
    }

    func testPinnedKeyConnectsAndBindsTheChannelToTheServerKey() throws {
        let (identity, _) = try ServerIdentity.loadOrCreate(directory: directory + "/s", now: Date())
        let accepted = Accepted()
        let server = try serve(try TLSServerTransport(identity: identity), accepted: accepted)
        defer { _ = server.close() }
        let client = try TLSClientTransport(trust: .fingerprint(identity.fingerprint), logger: .init(label: "t"))
        let ((connection, channel), outcome) = try dialRecording(client, server)
        // The mediator end tells its session the key it saw, once the handshake is done.
        let expected = TransportFacts(channelBinding: identity.fingerprint.bytes)
        XCTAssertEqual(try channel.eventLoop.submit { connection.facts }.wait(), expected)
        XCTAssertEqual(try channel.eventLoop.submit { outcome.ready }.wait(), [expected])
        // The server end binds to its own key; no client certificate was asked for or given.
        // (TLS 1.3: the server's handshake ends after the client's, when the client's Finished arrives.)
        var serverFacts: TransportFacts?
        for _ in 0..<200 where serverFacts == nil {
            serverFacts = try channel.eventLoop.submit { accepted.connections.first?.facts }.wait()
            if serverFacts == nil { usleep(10_000) }
        }
        XCTAssertEqual(serverFacts, expected)
    }

    func testPlainTransportIsReadyAtOnceAndBindsNothing() throws {
        XCTAssertEqual(try PlainTransport().serverConnection().facts, .plain)
        XCTAssertEqual(try PlainTransport().clientConnection(serverHost: "h", serverPort: 1).facts, .plain)
    }

    func testAnotherKeyThanThePinnedOneIsATrustRefusalAndTheKeyHolderReadsNothing() throws {
        let (identity, _) = try ServerIdentity.loadOrCreate(directory: directory + "/s", now: Date())
        let accepted = Accepted()
        let server = try serve(try TLSServerTransport(identity: identity), accepted: accepted)
        defer { _ = server.close() }
        let pin = KeyFingerprint(subjectPublicKeyInfo: [0])
        let client = try TLSClientTransport(trust: .fingerprint(pin), logger: .init(label: "t"))
        var outcome: Outcome?
        XCTAssertThrowsError(
            try {
                // The session writes its HELLO at once, before TLS is done: TLS must hold it back.
                let (_, recorded) = try dialRecording(client, server, send: "bytes written before the handshake")
                outcome = recorded
            }()
        ) { error in
            guard let t = error as? TransportError else { return XCTFail("not a TransportError: \(error)") }
            XCTAssertTrue(t.aboutTrust)
            XCTAssertTrue(t.description.contains("REFUSING"), t.description)
            XCTAssertTrue(t.description.contains(identity.fingerprint.description), t.description)
            XCTAssertTrue(t.description.contains(pin.description), t.description)
        }
        XCTAssertNil(outcome)
        // The unpinned key's holder decrypted nothing the mediator wrote, and the mediator's session was
        // never told the transport is ready: it has no channel binding, so it cannot compute, let alone
        // send, a proof (a CHALLENGE before that is refused: SessionStateMachineTests).
        usleep(100_000)
        XCTAssertEqual(try server.eventLoop.submit { accepted.received }.wait(), [])
    }

    func testFirstUseRecordsTheKeyOnlyAfterAuthenticationThenPinsIt() throws {
        let (identity, _) = try ServerIdentity.loadOrCreate(directory: directory + "/s", now: Date())
        let server = try serve(try TLSServerTransport(identity: identity))
        defer { _ = server.close() }
        let known = try KnownServersFile(path: directory + "/known")
        let client = try TLSClientTransport(trust: .knownServers(known), logger: .init(label: "t"))
        let (connection, channel) = try dial(client, server)
        let key = "127.0.0.1:\(server.localAddress!.port!)"
        XCTAssertNil(known.fingerprint(for: key), "nothing is recorded before the server proved the secret")
        try channel.eventLoop.submit { connection.authenticated() }.wait()
        XCTAssertEqual(known.fingerprint(for: key), identity.fingerprint)
        XCTAssertEqual(try KnownServersFile(path: directory + "/known").fingerprint(for: key), identity.fingerprint)

        // The same address with another key is now refused.
        let (other, _) = try ServerIdentity.loadOrCreate(directory: directory + "/other", now: Date())
        let port = server.localAddress!.port!
        try server.close().wait()
        let impostor = try serve(try TLSServerTransport(identity: other), port: port)
        defer { _ = impostor.close() }
        XCTAssertThrowsError(try dial(client, impostor)) { error in
            XCTAssertEqual((error as? TransportError)?.aboutTrust, true, "\(error)")
        }
    }

    func testPlainClientAgainstTLSServerIsExplained() throws {
        let (identity, _) = try ServerIdentity.loadOrCreate(directory: directory + "/s", now: Date())
        let server = try serve(try TLSServerTransport(identity: identity))
        defer { _ = server.close() }
        XCTAssertThrowsError(try dial(PlainTransport(), server, send: "\0\0\0\u{10}\u{1}\0 a plain HELLO")) { error in
            // The plain end sees the TLS alert the server answers with, and names the cause.
            XCTAssertTrue("\(error)".contains("--insecure"), "\(error)")
        }
    }

    func testTLSClientAgainstPlainServerIsExplained() throws {
        let server = try serve(PlainTransport())
        defer { _ = server.close() }
        let client = try TLSClientTransport(trust: .fingerprint(KeyFingerprint(subjectPublicKeyInfo: [0])), logger: .init(label: "t"))
        XCTAssertThrowsError(try dial(client, server)) { error in
            // The plain server recognises the ClientHello and hangs up; the TLS end says so (not a timeout).
            XCTAssertEqual("\(error)", "the peer closed the connection during the TLS handshake")
        }
    }

    func testTheHandshakeIsTLS13() throws {
        let (identity, _) = try ServerIdentity.loadOrCreate(directory: directory + "/s", now: Date())
        let server = try serve(try TLSServerTransport(identity: identity))
        defer { _ = server.close() }
        let client = try TLSClientTransport(trust: .fingerprint(identity.fingerprint), logger: .init(label: "t"))
        let (_, channel) = try dial(client, server, keepOpen: true)
        defer { _ = channel.close() }
        let version = try channel.eventLoop.submit {
            try channel.pipeline.syncOperations.handler(type: NIOSSLClientHandler.self).tlsVersion
        }.wait()
        XCTAssertEqual(version, .tlsv13)
    }
}
