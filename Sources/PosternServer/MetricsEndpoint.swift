import Logging
import NIOCore
import NIOHTTP1

/// `--metrics ADDR:PORT`: `GET /metrics` and nothing else, without the admin token, for a Prometheus
/// that should not hold the admin credential. It reveals counters and names, never changes
/// anything, and reads no body: each request is answered once and the connection closed, and a
/// connection that sends no request within `idleTimeout` is closed too.
final class MetricsEndpoint: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let render: (EventLoop) -> EventLoopFuture<String>
    private let idleTimeout: TimeAmount
    private var idleTimer: Scheduled<Void>?
    private var answered = false

    init(idleTimeout: TimeAmount, render: @escaping () -> String) {
        self.render = { $0.makeSucceededFuture(render()) }
        self.idleTimeout = idleTimeout
    }

    /// The text comes later: the server gathers its sessions' figures from their loops first.
    init(idleTimeout: TimeAmount, renderLater: @escaping () -> EventLoopFuture<String>) {
        self.render = { _ in renderLater() }
        self.idleTimeout = idleTimeout
    }

    func handlerAdded(context: ChannelHandlerContext) {
        idleTimer = context.eventLoop.scheduleTask(in: idleTimeout) { context.close(promise: nil) }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        idleTimer?.cancel()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .head(let head) = unwrapInboundIn(data), !answered else { return }
        answered = true
        idleTimer?.cancel()
        let path = head.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? ""
        switch (head.method, path) {
        case (.GET, "/metrics"):
            render(context.eventLoop).hop(to: context.eventLoop).whenComplete { [self] result in
                switch result {
                case .success(let text): answer(context, .ok, text, type: "text/plain; version=0.0.4; charset=utf-8")
                case .failure(let error): answer(context, .internalServerError, "\(error)\n", type: "text/plain")
                }
            }
        case (_, "/metrics"):
            answer(context, .methodNotAllowed, "only GET /metrics\n", type: "text/plain")
        default:
            answer(context, .notFound, "only GET /metrics is served here\n", type: "text/plain")
        }
    }

    private func answer(_ context: ChannelHandlerContext, _ status: HTTPResponseStatus, _ text: String, type: String) {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: type)
        headers.add(name: "Content-Length", value: "\(text.utf8.count)")
        headers.add(name: "Connection", value: "close")
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(string: text)))), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in context.close(promise: nil) }
    }
}
