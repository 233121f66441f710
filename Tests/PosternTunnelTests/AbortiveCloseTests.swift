import NIOCore
import NIOPosix
import PosternTunnel
import XCTest

/// `StreamRelay.abortiveClose` on a real TCP connection over loopback (no root): the peer must see a
/// reset (RST), where a normal close gives it an end of file (docs/protocol.md §6.4).
final class AbortiveCloseTests: XCTestCase {
    /// Tells how the connection ended for the client: "eof" or the errno of the error that ended it.
    private final class EndWatcher: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        let ended: EventLoopPromise<String>
        private var told = false

        init(_ ended: EventLoopPromise<String>) { self.ended = ended }

        private func tell(_ how: String) {
            guard !told else { return }
            told = true
            ended.succeed(how)
        }

        func errorCaught(context: ChannelHandlerContext, error: Error) {
            tell((error as? IOError).map { "errno \($0.errnoCode)" } ?? "\(error)")
        }

        func channelInactive(context: ChannelHandlerContext) { tell("eof") }
    }

    /// Connects a client to a fresh listener, closes the accepted socket with `close`, and returns
    /// what the client saw.
    private func clientSees(afterServer close: @escaping (Channel) -> Void) throws -> String {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { try? group.syncShutdownGracefully() }
        let loop = group.next()
        let accepted = loop.makePromise(of: Channel.self)
        let listener = try ServerBootstrap(group: loop)
            .childChannelInitializer { child in
                accepted.succeed(child)
                return child.eventLoop.makeSucceededVoidFuture()
            }
            .bind(host: "127.0.0.1", port: 0).wait()
        defer { try? listener.close().wait() }
        let ended = loop.makePromise(of: String.self)
        let client = try ClientBootstrap(group: loop)
            .channelInitializer { $0.pipeline.addHandler(EndWatcher(ended)) }
            .connect(to: listener.localAddress!).wait()
        defer { try? client.close().wait() }
        let child = try accepted.futureResult.wait()
        try loop.submit { close(child) }.wait()
        return try ended.futureResult.wait()
    }

    func testAbortiveCloseResetsThePeer() throws {
        XCTAssertEqual(try clientSees { StreamRelay.abortiveClose($0) }, "errno \(ECONNRESET)")
    }

    func testANormalCloseIsAnEndOfFile() throws {
        XCTAssertEqual(try clientSees { $0.close(promise: nil) }, "eof")
    }
}
