import NIOCore
import PosternCore

/// On a plain tunnel, a peer that opens with a TLS record is a peer configured for TLS: say so instead
/// of reporting an unknown frame type.
final class PlainPeerCheck: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        // A TLS record header: handshake (22) or alert (21), version 3.x.
        if buffer.readableBytes >= 2, let type = buffer.getInteger(at: buffer.readerIndex, as: UInt8.self),
            type == 22 || type == 21, buffer.getInteger(at: buffer.readerIndex + 1, as: UInt8.self) == 3
        {
            context.fireErrorCaught(
                TransportError("the peer speaks TLS but this end runs --insecure (plain TCP): use TLS on both ends, or --insecure on both"))
            context.close(promise: nil)
            return
        }
        context.fireChannelRead(data)
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }
}
