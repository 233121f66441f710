import NIOCore

/// Keeps what a forwarded connection delivers before its relay exists (bytes, then end of input) and
/// hands it over, in order, once the relay sits behind it; then steps out of the pipeline. What it
/// keeps is bounded by the socket's receive buffer: nobody asks for reads before the relay.
final class EarlyInput: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private var context: ChannelHandlerContext?
    private var bytes: ByteBuffer?
    private var inputClosed = false
    /// The user's connection was up and is gone (not: not up yet — an accepted socket becomes active
    /// a loop pass after its initializer ran, so `isActive` cannot tell a fresh user from a gone one).
    private(set) var userLeft = false

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var b = unwrapInboundIn(data)
        if bytes == nil { bytes = b } else { bytes!.writeBuffer(&b) }
    }

    /// Puts `first` ahead of everything the socket delivers (a PROXY header). Call before any read.
    func prepend(_ first: ByteBuffer) {
        var first = first
        if var b = bytes { first.writeBuffer(&b) }
        bytes = first
    }

    func channelReadComplete(context: ChannelHandlerContext) {}

    func channelInactive(context: ChannelHandlerContext) {
        userLeft = true
        context.fireChannelInactive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let e = event as? ChannelEvent, e == .inputClosed {
            inputClosed = true
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    /// The relay was added after this handler: give it what came so far and leave.
    func handOver() {
        guard let context else { return }
        if let b = bytes {
            bytes = nil
            context.fireChannelRead(wrapInboundOut(b))
            context.fireChannelReadComplete()
        }
        if inputClosed {
            inputClosed = false
            context.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
        }
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }
}
