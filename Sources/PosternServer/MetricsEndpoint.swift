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

    private let render: () -> String
    private let idleTimeout: TimeAmount
    private var idleTimer: Scheduled<Void>?
    private var answered = false

    init(idleTimeout: TimeAmount, render: @escaping () -> String) {
        self.render = render
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
            answer(context, .ok, render(), type: "text/plain; version=0.0.4; charset=utf-8")
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
