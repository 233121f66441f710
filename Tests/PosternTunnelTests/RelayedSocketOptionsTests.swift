import NIOCore
import NIOPosix
import PosternTunnel
import XCTest

/// The options every relayed socket gets (`relayedStreamOptions`, `relayedStreamChildOptions`), read
/// back from real sockets over loopback. TCP_NODELAY is an IPPROTO_TCP option: given at the socket
/// level (`ChannelOptions.socketOption(.tcp_nodelay)`) the same number 1 is SO_DEBUG, which the
/// kernel refuses without CAP_NET_ADMIN — every relayed connection of a server or mediator run as an
/// ordinary user failed with EACCES (and as root, SO_DEBUG was switched on instead).
final class RelayedSocketOptionsTests: XCTestCase {
    private let soDebug = ChannelOptions.socketOption(NIOBSDSocket.Option(rawValue: SO_DEBUG))

    func testBothEndsHaveNoDelayAndNoSocketDebugging() throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { try? group.syncShutdownGracefully() }
        let loop = group.next()
        let accepted = loop.makePromise(of: Channel.self)
        let listener = try ServerBootstrap(group: loop)
            .relayedStreamChildOptions()
            .childChannelInitializer { child in
                accepted.succeed(child)
                return child.eventLoop.makeSucceededVoidFuture()
            }
            .bind(host: "127.0.0.1", port: 0).wait()
        defer { try? listener.close().wait() }
        let client = try ClientBootstrap(group: loop).relayedStreamOptions()
            .connect(to: listener.localAddress!).wait()
        defer { try? client.close().wait() }
        let child = try accepted.futureResult.wait()
        for (end, channel) in [("connected", client), ("accepted", child)] {
            XCTAssertEqual(try channel.getOption(ChannelOptions.tcpOption(.tcp_nodelay)).wait(), 1, "\(end): TCP_NODELAY")
            XCTAssertEqual(try channel.getOption(soDebug).wait(), 0, "\(end): SO_DEBUG")
        }
    }
}
