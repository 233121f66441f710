import NIOCore
import NIOHTTP1

/// One request on one connection and its answer, above NIO's HTTP/1.1 client codec (which undoes
/// chunking and reads close-delimited bodies). `.whole` collects the body; `.lines` hands each line
/// of a `200` body to a callback as it arrives (the event stream, which may run for days), and any
/// other status's body is collected for its error message.
final class AdminExchange: ChannelInboundHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundOut = HTTPClientRequestPart

    enum Mode {
        case whole
        case lines(@Sendable (String) -> Void)
    }

    struct Answer {
        var status: Int
        /// `HTTP/1.1 401 Unauthorized`.
        var statusLine: String
        var body: ByteBuffer
    }

    private let head: HTTPRequestHead
    private let body: ByteBuffer?
    private let mode: Mode
    private let deadline: NIODeadline
    private let timedOut: () -> Error
    let answer: EventLoopPromise<Answer>
    private var status: Int?
    private var statusLine = ""
    private var collected = ByteBuffer()
    private var streaming = false
    private var finished = false
    private var timer: Scheduled<Void>?

    /// `deadline`: the answer must be complete by then, or for `.lines` its head must have come.
    init(
        head: HTTPRequestHead, body: ByteBuffer?, mode: Mode, deadline: NIODeadline, timedOut: @escaping () -> Error,
        answer: EventLoopPromise<Answer>
    ) {
        self.head = head
        self.body = body
        self.mode = mode
        self.deadline = deadline
        self.timedOut = timedOut
        self.answer = answer
    }

    func handlerAdded(context: ChannelHandlerContext) {
        timer = context.eventLoop.scheduleTask(deadline: deadline) { [weak self] in
            self?.fail(context, self?.timedOut() ?? ChannelError.ioOnClosedChannel)
        }
        // Written at once: a TLS handler below holds it until its handshake is done.
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        if let body { context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil) }
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !finished else { return }
        switch unwrapInboundIn(data) {
        case .head(let h):
            status = Int(h.status.code)
            statusLine = "HTTP/\(h.version.major).\(h.version.minor) \(h.status.code) \(h.status.reasonPhrase)"
            if case .lines = mode, h.status == .ok {
                // The stream may last as long as the server runs: the deadline covered reaching it.
                streaming = true
                timer?.cancel()
            }
        case .body(var b):
            collected.writeBuffer(&b)
            if streaming, case .lines(let line) = mode { deliverLines(line) }
        case .end:
            finish(context)
        }
    }

    private func deliverLines(_ line: (String) -> Void) {
        while let newline = collected.readableBytesView.firstIndex(of: UInt8(ascii: "\n")) {
            let length = newline - collected.readerIndex
            let text = collected.readString(length: length) ?? ""
            collected.moveReaderIndex(forwardBy: 1)
            line(text)
        }
        collected.discardReadBytes()
    }

    func channelInactive(context: ChannelHandlerContext) {
        if streaming {
            // The server ended the stream (it stopped, or dropped a client that fell behind).
            finish(context)
        } else {
            fail(
                context,
                AdminClient.Failure(
                    description: status == nil
                        ? "the admin API closed the connection without answering"
                        : "the admin API closed the connection before its answer was complete"))
        }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        if streaming {
            // A stream cut short (the server stopped mid-chunk, a TLS connection closed without
            // close_notify) ends like one the server closed: the lines so far were delivered.
            finish(context)
        } else {
            fail(context, error)
        }
    }

    private func finish(_ context: ChannelHandlerContext) {
        guard !finished else { return }
        finished = true
        timer?.cancel()
        if let status {
            answer.succeed(Answer(status: status, statusLine: statusLine, body: collected))
        } else {
            answer.fail(AdminClient.Failure(description: "the admin API sent no valid HTTP response"))
        }
        context.close(promise: nil)
    }

    private func fail(_ context: ChannelHandlerContext, _ error: Error) {
        guard !finished else { return }
        finished = true
        timer?.cancel()
        answer.fail(error)
        context.close(promise: nil)
    }
}
