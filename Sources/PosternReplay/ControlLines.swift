import Foundation
import NIOCore

/// The replay control connection's framing: text lines ending in "\n", at most `maxLine` bytes each
/// (a longer line is a protocol error, not a reason to buffer without end). Lines go to `onLine`;
/// the end of the connection to `onClose`.
final class ControlLines: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    static let maxLine = 1 << 20
    private var pending: [UInt8] = []
    var onLine: ((String) -> Void)?
    var onClose: ((String) -> Void)?
    private var closed = false

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = unwrapInboundIn(data)
        pending += buffer.readBytes(length: buffer.readableBytes) ?? []
        while let end = pending.firstIndex(of: UInt8(ascii: "\n")) {
            let line = String(decoding: pending[..<end], as: UTF8.self)
            pending.removeSubrange(...end)
            onLine?(line)
        }
        if pending.count > Self.maxLine {
            pending = []
            report("control line longer than \(Self.maxLine) bytes")
            context.close(promise: nil)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        report("control connection closed")
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        // In strerror(3)'s words ("Connection reset by peer"), not NIO's nested description.
        if let io = error as? IOError {
            report("control connection failed: \(String(cString: strerror(io.errnoCode)))")
        } else {
            report("control connection failed: \(error)")
        }
        context.close(promise: nil)
    }

    private func report(_ why: String) {
        guard !closed else { return }
        closed = true
        onClose?(why)
    }

    static func send(_ line: String, on channel: Channel) {
        var buffer = channel.allocator.buffer(capacity: line.utf8.count + 1)
        buffer.writeString(line + "\n")
        channel.writeAndFlush(buffer, promise: nil)
    }
}
